//! The sequence-to-sequence loss and the label shift of transformers' encoder-decoders.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::layers::IGNORE_INDEX;

/// Mean cross-entropy of position `t`'s logits against `labels[t]` (no shift: the decoder input
/// is already the labels shifted right), over labels that are not [`IGNORE_INDEX`]; NaN when
/// every label is ignored, as in PyTorch.
///
/// # Shapes
/// - `logits`: `[batch, len, vocab]`
/// - `labels`: `[batch, len]`
/// - output: `[1]`
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

/// transformers' `shift_tokens_right`: `[start, labels[..len - 1]]` per row, with -100 read as
/// `pad_token_id`.
///
/// # Shapes
/// - `labels`, output: `[batch, len]`
pub fn shift_tokens_right(labels: Tensor<2, Int>, pad_token_id: u32, decoder_start_token_id: u32) -> Tensor<2, Int> {
    let [batch, len] = labels.dims();
    let device = labels.device();
    let start = Tensor::<2, Int>::full([batch, 1], i64::from(decoder_start_token_id), &device);
    if len == 0 {
        return labels;
    }
    let shifted = Tensor::cat(vec![start, labels.narrow(1, 0, len - 1)], 1);
    shifted.clone().mask_fill(shifted.equal_elem(IGNORE_INDEX), i64::from(pad_token_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn shift_and_unshifted_mean() {
        let device = Device::flex();
        let labels = Tensor::<2, Int>::from_data(TensorData::new(vec![5i64, IGNORE_INDEX, 7], [1, 3]), &device);
        let shifted = shift_tokens_right(labels.clone(), 0, 1).into_data().convert::<i64>().try_into_vec::<i64>().expect("ints");
        assert_eq!(shifted, vec![1, 5, 0]);
        let logits = Tensor::<3>::from_floats([[[0.0; 8], [1.0; 8], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0]]], &device);
        let loss = seq2seq_lm_loss(logits, labels).into_scalar::<f32>();
        let expected = (8f32.ln() + (7.0 + 2f32.exp()).ln() - 2.0) / 2.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }
}
