//! Whisper's label shift, in transformers' argument order; the loss is [`crate::layers::seq2seq_lm_loss`].

use burn::tensor::{Int, Tensor};

use crate::layers::shift_right;

/// transformers' `shift_tokens_right`: `[start, labels[..len - 1]]` per row, with -100 read as
/// `pad_token_id`.
///
/// # Shapes
/// - `labels`, output: `[batch, len]`
pub fn shift_tokens_right(labels: Tensor<2, Int>, pad_token_id: u32, decoder_start_token_id: u32) -> Tensor<2, Int> {
    shift_right(labels, decoder_start_token_id, pad_token_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{IGNORE_INDEX, seq2seq_lm_loss};
    use burn::tensor::TensorData;

    #[test]
    fn shift_and_unshifted_mean() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let labels = Tensor::<2, Int>::from_data(TensorData::new(vec![5i64, IGNORE_INDEX, 7], [1, 3]), &device);
        let shifted = shift_tokens_right(labels.clone(), 0, 1).into_data().convert::<i64>().try_into_vec::<i64>().expect("ints");
        assert_eq!(shifted, vec![1, 5, 0]);
        let logits = Tensor::<3>::from_floats([[[0.0; 8], [1.0; 8], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0]]], &device);
        let loss = seq2seq_lm_loss(logits, labels).into_scalar::<f32>();
        let expected = (8f32.ln() + (7.0 + 2f32.exp()).ln() - 2.0) / 2.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }
}
