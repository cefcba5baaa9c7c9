//! LayerNorm with transformers' parameter names (`weight`, `bias`; Burn's own uses `gamma`/`beta`).

use burn::module::{Module, Param};
use burn::tensor::{Device, FloatDType, Tensor};

/// Layer normalisation over the last axis: `y = (x - mean) / sqrt(var + eps) * weight + bias`,
/// with the biased variance, as `torch.nn.LayerNorm`.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// Scale, `[d_model]`.
    pub weight: Param<Tensor<1>>,
    /// Shift, `[d_model]`.
    pub bias: Param<Tensor<1>>,
    /// Added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// Ones and zeros, as transformers initialises it.
    pub fn new(d_model: usize, eps: f64, device: &Device) -> Self {
        LayerNorm {
            weight: Param::from_tensor(Tensor::ones([d_model], device)),
            bias: Param::from_tensor(Tensor::zeros([d_model], device)),
            eps,
        }
    }

    /// Normalises the last axis.
    ///
    /// # Shapes
    /// - `x`: `[..., d_model]`, and the same out.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        // The statistics in f32 whatever the model's type (half-precision sums lose too much, and
        // PyTorch's kernels accumulate in f32 too); the result returns to the weight's type.
        let x = x.cast(FloatDType::F32);
        let (var, mean) = x.clone().var_mean_bias(D - 1);
        let normed = (x - mean).div((var + self.eps).sqrt());
        let weight = self.weight.val();
        normed.cast(weight.dtype()) * weight.unsqueeze() + self.bias.val().unsqueeze()
    }
}
