//! The decoder inputs and the loss of sequence-to-sequence training.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::layers::IGNORE_INDEX;

/// transformers' `_shift_right`: `[start, labels[.., ..len-1]]`, with ignored labels (-100)
/// replaced by `pad`.
///
/// # Shapes
/// - `labels`: `[batch, len]`, and the same out.
pub fn shift_right(labels: Tensor<2, Int>, start: u32, pad: u32) -> Tensor<2, Int> {
    let [batch, len] = labels.dims();
    let first = Tensor::<2, Int>::full([batch, 1], i64::from(start), &labels.device());
    let shifted = if len > 1 { Tensor::cat(vec![first, labels.narrow(1, 0, len - 1)], 1) } else { first.narrow(1, 0, len) };
    let ignored = shifted.clone().equal_elem(IGNORE_INDEX);
    shifted.mask_fill(ignored, i64::from(pad))
}

/// Mean token cross-entropy of a sequence-to-sequence model: position `t` predicts `labels[t]`
/// (no shift: the decoder input was shifted instead), over labels that are not -100.
///
/// # Shapes
/// - `logits`: `[batch, len, vocab]`, `labels`: `[batch, len]`, output `[1]`
pub fn seq2seq_lm_loss(logits: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<1> {
    let [batch, len, vocab] = logits.dims();
    let n = batch * len;
    let targets = labels.reshape([n]);
    let kept = targets.clone().not_equal_elem(IGNORE_INDEX);
    let index = targets.mask_fill(kept.clone().bool_not(), 0).reshape([n, 1]);
    let picked = log_softmax(logits.reshape([n, vocab]), 1).gather(1, index).reshape([n]);
    let kept = kept.float();
    picked.mul(kept.clone()).sum().neg().div(kept.sum())
}
