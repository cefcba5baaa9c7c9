//! transformers' causal language-modelling loss.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

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
    let logits = logits.narrow(1, 0, seq - 1).reshape([n, vocab]);
    let targets = labels.narrow(1, 1, seq - 1).reshape([n]);
    let kept = targets.clone().not_equal_elem(IGNORE_INDEX);
    let index = targets.mask_fill(kept.clone().bool_not(), 0).reshape([n, 1]);
    let picked = log_softmax(logits, 1).gather(1, index).reshape([n]);
    let kept = kept.float();
    picked.mul(kept.clone()).sum().neg().div(kept.sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn matches_hand_computed_shifted_mean() {
        let device = Device::flex();
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
}
