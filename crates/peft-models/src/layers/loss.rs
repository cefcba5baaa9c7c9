//! transformers' losses: class, token, span, causal and sequence-to-sequence language modelling,
//! all a mean cross-entropy that skips [`IGNORE_INDEX`].

use burn::tensor::activation::log_softmax;
use burn::tensor::{FloatDType, Int, Tensor};

/// Labels equal to this are left out of the loss, as in PyTorch's `CrossEntropyLoss`.
pub const IGNORE_INDEX: i64 = -100;

/// Mean next-token cross-entropy, as transformers' `ForCausalLMLoss`.
///
/// Position `t`'s logits predict `labels[t + 1]`: the labels are shifted left by one and the last
/// position has no target. `loss = -mean log softmax(logits[b, t])[labels[b, t + 1]]` over the
/// pairs whose label is not [`IGNORE_INDEX`] (NaN when every label is ignored, as in PyTorch).
///
/// # Shapes
/// - `logits`: `[batch, seq, vocab]`
/// - `labels`: `[batch, seq]`
/// - output: `[1]`
pub fn causal_lm_loss(logits: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<1> {
    let [batch, seq, vocab] = logits.dims();
    if seq < 2 {
        // No position has a next token: the mean over nothing.
        return Tensor::<1>::from_floats([f32::NAN], &logits.device());
    }
    let n = batch * (seq - 1);
    cross_entropy(logits.narrow(1, 0, seq - 1).reshape([n, vocab]), labels.narrow(1, 1, seq - 1).reshape([n]))
}

/// Mean cross-entropy of `logits` against class `labels`, skipping [`IGNORE_INDEX`].
///
/// `loss = -mean_i log softmax(logits_i)[labels_i]` over the labels that are not ignored (NaN
/// when every label is ignored, as in PyTorch).
///
/// # Shapes
/// - `logits`: `[batch, num_labels]`
/// - `labels`: `[batch]`
/// - output: `[1]`
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [batch] = labels.dims();
    let kept = labels.clone().not_equal_elem(IGNORE_INDEX);
    let index = labels.mask_fill(kept.clone().bool_not(), 0).reshape([batch, 1]);
    // In f32 whatever the logits' type, as transformers upcasts them for the loss.
    let picked = log_softmax(logits.cast(FloatDType::F32), 1).gather(1, index).reshape([batch]);
    let kept = kept.float();
    picked.mul(kept.clone()).sum().neg().div(kept.sum())
}

/// Mean cross-entropy of per-token logits against `labels`, skipping [`IGNORE_INDEX`]
/// (transformers' token classification loss).
///
/// # Shapes
/// - `logits`: `[batch, len, n]`
/// - `labels`: `[batch, len]`
/// - output: `[1]`
pub fn token_cross_entropy(logits: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<1> {
    let [batch, len, n] = logits.dims();
    cross_entropy(logits.reshape([batch * len, n]), labels.reshape([batch * len]))
}

/// Mean cross-entropy of an encoder-decoder's position `t` against `labels[t]`: no shift, since
/// the decoder input is already the labels shifted right; [`token_cross_entropy`] over the vocabulary.
///
/// # Shapes
/// - `logits`: `[batch, len, vocab]`
/// - `labels`: `[batch, len]`
/// - output: `[1]`
pub fn seq2seq_lm_loss(logits: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<1> {
    token_cross_entropy(logits, labels)
}

/// transformers' extractive QA loss: `(CE(start) + CE(end)) / 2`, positions clamped to
/// `0..=len` and those equal to `len` (outside the input) ignored.
///
/// # Shapes
/// - `start_logits`, `end_logits`: `[batch, len]`
/// - `start_positions`, `end_positions`: `[batch]`
/// - output: `[1]`
pub fn span_cross_entropy(start_logits: Tensor<2>, end_logits: Tensor<2>, start_positions: Tensor<1, Int>, end_positions: Tensor<1, Int>) -> Tensor<1> {
    let len = start_logits.dims()[1] as i64;
    let clamp = |p: Tensor<1, Int>| {
        let p = p.clamp(0, len);
        p.clone().mask_fill(p.equal_elem(len), IGNORE_INDEX)
    };
    (cross_entropy(start_logits, clamp(start_positions)) + cross_entropy(end_logits, clamp(end_positions))).div_scalar(2.0)
}

/// transformers' `_shift_right` / `shift_tokens_right`: the decoder input of an encoder-decoder
/// is `[start, labels[.., ..len - 1]]` per row, with ignored labels (-100) replaced by `pad`.
///
/// # Shapes
/// - `labels`: `[batch, len]`, and the same out.
pub fn shift_right(labels: Tensor<2, Int>, start: u32, pad: u32) -> Tensor<2, Int> {
    let [batch, len] = labels.dims();
    if len == 0 {
        return labels;
    }
    let first = Tensor::<2, Int>::full([batch, 1], i64::from(start), &labels.device());
    let shifted = Tensor::cat(vec![first, labels.narrow(1, 0, len - 1)], 1);
    let ignored = shifted.clone().equal_elem(IGNORE_INDEX);
    shifted.mask_fill(ignored, i64::from(pad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn matches_hand_computed_shifted_mean() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        // One row, three positions, vocab 2; position 1 predicts label 1, position 2 has no target.
        let logits = Tensor::<3>::from_floats([[[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]]], &device);
        let labels = Tensor::<2, Int>::from_data(TensorData::new(vec![7i64, 0, 1], [1, 3]), &device);
        let loss = causal_lm_loss(logits.clone(), labels).into_scalar::<f32>();
        let expected = (2f32.ln() + (1.0 + (-2f32).exp()).ln() + 2.0) / 2.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
        let labels = Tensor::<2, Int>::from_data(TensorData::new(vec![7i64, IGNORE_INDEX, 1], [1, 3]), &device);
        let loss = causal_lm_loss(logits, labels).into_scalar::<f32>();
        let expected = (1.0 + (-2f32).exp()).ln() + 2.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }

    #[test]
    fn span_loss_ignores_positions_outside_the_input() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let logits = Tensor::<2>::from_floats([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0]], &device);
        let start = Tensor::<1, Int>::from_ints([1, 7], &device);
        let end = Tensor::<1, Int>::from_ints([1, 2], &device);
        let loss = span_cross_entropy(logits.clone(), logits, start, end).into_scalar::<f32>();
        // Start: only row 0 counts (7 is clamped to len 3 and ignored); end: both rows.
        let row0 = (2.0 + 2f32.exp()).ln() - 2.0;
        let row1 = 3f32.ln();
        let expected = (row0 + (row0 + row1) / 2.0) / 2.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }
}
