//! Root-mean-square normalisation with transformers' parameter name (`weight`).

use burn::module::{Module, Param};
use burn::tensor::{Device, FloatDType, Tensor};

/// RMSNorm over the last axis: `y = x / sqrt(mean(x²) + eps) * weight`, as `LlamaRMSNorm`.
///
/// Unlike LayerNorm there is no mean subtraction and no bias. The parameter is named `weight`, so
/// `model.norm.weight` in a checkpoint loads into a field named `norm` without renaming.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// Scale, `[d_model]`.
    pub weight: Param<Tensor<1>>,
    /// Added to the mean square before the square root.
    pub eps: f64,
}

impl RmsNorm {
    /// A norm with `weight` all ones, as transformers initialises it.
    pub fn new(d_model: usize, eps: f64, device: &Device) -> Self {
        RmsNorm { weight: Param::from_tensor(Tensor::ones([d_model], device)), eps }
    }

    /// Normalises the last axis.
    ///
    /// # Shapes
    /// - `x`: `[..., d_model]`, and the same out.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        // In f32 whatever the model's type, as transformers does: a half-precision mean of squares
        // loses too much. The result returns to the weight's type.
        let x = x.cast(FloatDType::F32);
        let mean_square = x.clone().square().mean_dim(D - 1);
        let normed = x * (mean_square + self.eps).sqrt().recip();
        let weight = self.weight.val();
        normed.cast(weight.dtype()) * weight.unsqueeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_rms_after_norm() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let norm = RmsNorm::new(4, 0.0, &device);
        let x = Tensor::<2>::from_floats([[1.0, -2.0, 3.0, -4.0], [2.0, 2.0, 2.0, 2.0]], &device);
        let y = norm.forward(x).into_data().try_to_vec::<f32>().expect("succeeds");
        let rms = (7.5f32).sqrt();
        let expected = [1.0 / rms, -2.0 / rms, 3.0 / rms, -4.0 / rms, 1.0, 1.0, 1.0, 1.0];
        for (a, b) in y.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
