//! The learning rate of each optimizer step, as transformers' `get_scheduler` computes it (the
//! schedules the PEFT guides train with).

/// How the learning rate moves over the run (`--lr-scheduler`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LrScheduler {
    /// The base rate throughout, after the warm-up (transformers' `constant_with_warmup`, which
    /// is `constant` when there is no warm-up).
    #[default]
    Constant,
    /// Warm-up, then a straight line down to 0 at the last step (transformers' default).
    Linear,
    /// Warm-up, then half a cosine wave down to 0 at the last step.
    Cosine,
}

impl LrScheduler {
    /// The name transformers gives it (`lr_scheduler_type`), for model cards.
    pub fn name(self) -> &'static str {
        match self {
            LrScheduler::Constant => "constant",
            LrScheduler::Linear => "linear",
            LrScheduler::Cosine => "cosine",
        }
    }
}

/// A schedule over a run: the rate of optimizer step `step` (0-based) of `total`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// The shape.
    pub kind: LrScheduler,
    /// The peak rate.
    pub base_lr: f64,
    /// Steps of linear warm-up from 0.
    pub warmup: usize,
    /// Optimizer steps in the run.
    pub total: usize,
}

impl Schedule {
    /// The rate of step `step` (0-based).
    ///
    /// With `w` warm-up steps and `T` steps in all: `lr · s / w` while `s < w` (so the first
    /// step of a warm-up runs at 0, as transformers' does); then `lr` (constant),
    /// `lr · (T − s) / (T − w)` (linear), or `lr · ½ (1 + cos(π (s − w) / (T − w)))` (cosine),
    /// never below 0.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.base_lr * step as f64 / self.warmup.max(1) as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = (step - self.warmup) as f64 / span;
        let factor = match self.kind {
            LrScheduler::Constant => 1.0,
            LrScheduler::Linear => (1.0 - progress).max(0.0),
            LrScheduler::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        };
        self.base_lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(kind: LrScheduler, warmup: usize, total: usize) -> Vec<f64> {
        let schedule = Schedule { kind, base_lr: 1.0, warmup, total };
        (0..total).map(|s| schedule.lr(s)).collect()
    }

    #[test]
    fn linear_warms_up_then_falls_to_zero_as_transformers_does() {
        // transformers' get_linear_schedule_with_warmup(warmup 2, total 6): 0, 0.5, 1, 0.75, 0.5, 0.25.
        assert_eq!(rates(LrScheduler::Linear, 2, 6), vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25]);
    }

    #[test]
    fn constant_is_flat_after_its_warm_up() {
        assert_eq!(rates(LrScheduler::Constant, 0, 3), vec![1.0; 3]);
        assert_eq!(rates(LrScheduler::Constant, 2, 4), vec![0.0, 0.5, 1.0, 1.0]);
    }

    #[test]
    fn cosine_follows_half_a_wave() {
        let r = rates(LrScheduler::Cosine, 1, 5);
        let expected = [0.0, 1.0, 0.5 * (1.0 + (std::f64::consts::PI * 0.25).cos()), 0.5, 0.5 * (1.0 + (std::f64::consts::PI * 0.75).cos())];
        for (a, b) in r.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{r:?}");
        }
    }

    #[test]
    fn a_warm_up_longer_than_the_run_never_reaches_the_peak() {
        assert!(rates(LrScheduler::Linear, 10, 4).iter().all(|&r| r < 0.5));
    }
}
