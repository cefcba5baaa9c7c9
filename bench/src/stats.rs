//! Summaries of step times.

use serde::Serialize;
use std::time::Duration;

/// Median, min and max of a set of timings, in milliseconds, with the samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// The median (the mean of the two middle samples for an even count).
    pub median_ms: f64,
    /// The fastest sample.
    pub min_ms: f64,
    /// The slowest sample.
    pub max_ms: f64,
    /// Every sample, in the order measured.
    pub samples_ms: Vec<f64>,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let mut sorted = ms.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Summary { median_ms: median, min_ms: sorted[0], max_ms: sorted[n - 1], samples_ms: ms })
    }
}

#[cfg(test)]
mod tests {
    use super::Summary;
    use std::time::Duration;

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = |v: &[u64]| v.iter().map(|&x| Duration::from_millis(x)).collect::<Vec<_>>();
        let s = Summary::of(&ms(&[30, 10, 20])).expect("samples");
        assert_eq!((s.median_ms, s.min_ms, s.max_ms), (20.0, 10.0, 30.0));
        assert_eq!(Summary::of(&ms(&[40, 10, 20, 30])).map(|s| s.median_ms), Some(25.0));
        assert!(Summary::of(&[]).is_none());
    }
}
