//! Next-token scores on the host, one row of `vocab` floats at a time: transformers' logits
//! processors (repetition penalty, temperature, top-k, top-p), log-softmax, argmax, sampling.
//!
//! The rows come back to the host every step anyway (to pick tokens and test eos); working in
//! f32 there keeps the arithmetic in transformers' order and precision.

use burn::tensor::Tensor;
use peft_core::{Error, Result};

use super::GenerationConfig;
use super::rng::Rng;

/// The last position's logits of every row, read back: `rows` slices of `vocab` floats.
///
/// # Shapes
/// - `logits`: `[rows, len, vocab]`
pub(crate) fn last_logits(logits: Tensor<3>) -> Result<(Vec<f32>, usize)> {
    let [rows, len, vocab] = logits.dims();
    let last = len.checked_sub(1).ok_or_else(|| Error::InvalidState("the model returned logits for no position".into()))?;
    let data = logits.narrow(1, last, 1).reshape([rows, vocab]).into_data().convert::<f32>();
    let values = data.try_into_vec::<f32>().map_err(|e| Error::InvalidState(format!("cannot read logits back: {e:?}")))?;
    Ok((values, vocab))
}

/// transformers' `RepetitionPenaltyLogitsProcessor`: each distinct token of `seen` has its score
/// divided by `penalty` when positive, multiplied when negative.
pub(crate) fn penalize_repetition(scores: &mut [f32], seen: &[u32], penalty: f64) {
    if penalty == 1.0 {
        return;
    }
    let penalty = penalty as f32;
    let mut done = vec![false; scores.len()];
    for &t in seen {
        let t = t as usize;
        if t < scores.len() && !done[t] {
            done[t] = true;
            let s = scores[t];
            scores[t] = if s < 0.0 { s * penalty } else { s / penalty };
        }
    }
}

/// The sampling warpers in transformers' order: temperature, top-k, top-p. Removed tokens get
/// `-inf`; at least `min_keep` tokens stay.
pub(crate) fn warp(scores: &mut [f32], config: &GenerationConfig, min_keep: usize) {
    if config.temperature != 1.0 {
        let t = config.temperature as f32;
        scores.iter_mut().for_each(|s| *s /= t);
    }
    if config.top_k > 0 {
        let k = config.top_k.max(min_keep).min(scores.len());
        let mut sorted = scores.to_vec();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        let kth = sorted[k - 1];
        // Ties with the k-th score stay, as transformers' `scores < topk[-1]` keeps them.
        scores.iter_mut().filter(|s| **s < kth).for_each(|s| *s = f32::NEG_INFINITY);
    }
    if config.top_p < 1.0 {
        top_p(scores, config.top_p, min_keep);
    }
}

/// Keeps the most likely tokens whose probabilities reach `p`: in ascending order, tokens whose
/// cumulative probability is `<= 1 - p` go, the last `min_keep` always stay.
fn top_p(scores: &mut [f32], p: f64, min_keep: usize) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Stable, so equal scores keep index order as torch's CPU sort does.
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let sorted: Vec<f32> = order.iter().map(|i| scores[*i]).collect();
    let probs = softmax(&sorted);
    let threshold = (1.0 - p) as f32;
    let keep_from = scores.len().saturating_sub(min_keep);
    let mut cumulative = 0f32;
    for (rank, (&i, prob)) in order.iter().zip(probs).enumerate() {
        cumulative += prob;
        if cumulative <= threshold && rank < keep_from {
            scores[i] = f32::NEG_INFINITY;
        }
    }
}

/// `softmax(x)` in f32 (sums in f64 for a stable total).
pub(crate) fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return vec![0.0; scores.len()];
    }
    let exp: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = exp.iter().map(|e| f64::from(*e)).sum();
    exp.iter().map(|e| (f64::from(*e) / total) as f32).collect()
}

/// `log_softmax(x) = x - max - ln(sum(exp(x - max)))` in f32.
pub(crate) fn log_softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f64 = scores.iter().map(|s| f64::from((s - max).exp())).sum();
    let log_total = total.ln() as f32;
    scores.iter_mut().for_each(|s| *s = *s - max - log_total);
}

/// The index of the highest score, the first on ties (NaN never wins).
pub(crate) fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] || scores[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// One token drawn from `softmax(scores)`; the argmax when every score is `-inf`.
pub(crate) fn sample(scores: &[f32], rng: &mut Rng) -> u32 {
    let probs = softmax(scores);
    let total: f64 = probs.iter().map(|p| f64::from(*p)).sum();
    if total <= 0.0 {
        return argmax(scores);
    }
    let mut u = rng.uniform() * total;
    for (i, p) in probs.iter().enumerate() {
        u -= f64::from(*p);
        if u < 0.0 && *p > 0.0 {
            return i as u32;
        }
    }
    // Rounding left `u` just above the total: the last token with any mass.
    probs.iter().rposition(|p| *p > 0.0).map_or(0, |i| i as u32)
}

/// `count` distinct indices drawn without replacement from `softmax(scores)` (beam sampling);
/// fewer when fewer tokens have mass.
pub(crate) fn sample_distinct(scores: &[f32], count: usize, rng: &mut Rng) -> Vec<usize> {
    let mut scores = scores.to_vec();
    let mut picked = Vec::with_capacity(count);
    for _ in 0..count {
        if scores.iter().all(|s| *s == f32::NEG_INFINITY) {
            break;
        }
        let i = sample(&scores, rng) as usize;
        picked.push(i);
        scores[i] = f32::NEG_INFINITY;
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(f: impl FnOnce(&mut GenerationConfig)) -> GenerationConfig {
        let mut c = GenerationConfig { do_sample: true, top_k: 0, ..GenerationConfig::default() };
        f(&mut c);
        c
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_once() {
        let mut s = vec![2.0, -2.0, 1.0];
        penalize_repetition(&mut s, &[0, 1, 0, 7], 2.0);
        assert_eq!(s, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn top_k_keeps_ties_and_top_p_keeps_the_head() {
        let mut s = vec![1.0, 3.0, 3.0, 2.0];
        warp(&mut s, &config(|c| c.top_k = 1), 1);
        assert_eq!(s, vec![f32::NEG_INFINITY, 3.0, 3.0, f32::NEG_INFINITY]);
        // probs ~ [0.64, 0.24, 0.09, 0.03]: top_p 0.7 keeps two, 0.5 keeps one.
        let logits = [4.0f32, 3.0, 2.0, 1.0];
        let kept = |p| {
            let mut s = logits.to_vec();
            warp(&mut s, &config(|c| c.top_p = p), 1);
            s.iter().filter(|x| x.is_finite()).count()
        };
        assert_eq!((kept(0.5), kept(0.7), kept(1.0)), (1, 2, 4));
        let mut s = logits.to_vec();
        warp(&mut s, &config(|c| c.top_p = 0.01), 3);
        assert_eq!(s.iter().filter(|x| x.is_finite()).count(), 3, "min_keep");
    }

    #[test]
    fn log_softmax_normalises() {
        let mut s = vec![1.0f32, 2.0, 3.0];
        log_softmax(&mut s);
        let total: f32 = s.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!((s[2] - s[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let mut rng = Rng::new(Some(3));
        let scores = [0f32, (3f32).ln(), f32::NEG_INFINITY];
        let mut counts = [0usize; 3];
        for _ in 0..4000 {
            counts[sample(&scores, &mut rng) as usize] += 1;
        }
        assert_eq!(counts[2], 0);
        assert!((900..1100).contains(&counts[0]), "{counts:?}");
        let mut picks = sample_distinct(&scores, 3, &mut rng);
        picks.sort_unstable();
        assert_eq!(picks, vec![0, 1]);
    }
}
