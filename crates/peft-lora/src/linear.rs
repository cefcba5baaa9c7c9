//! LoRA on a linear layer.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor, TensorData};
use peft_core::{LinearAdapter, LowRank, Result};

/// LoRA on a linear layer: `h = W0 x + s * B A dropout(x)`.
///
/// Stored in Burn's orientation, `A: [d_input, r]` and `B: [r, d_output]`, so the forward is two
/// plain products on activations; the Python library's `lora_A.weight: [r, d_input]` and
/// `lora_B.weight: [d_output, r]` are the transposes, taken at the file boundary.
#[derive(Module, Debug)]
pub struct LoraLinear {
    /// `A`, shape `[d_input, r]`.
    pub lora_a: Param<Tensor<2>>,
    /// `B`, shape `[r, d_output]`.
    pub lora_b: Param<Tensor<2>>,
    /// Dropout on the adapter's input.
    pub dropout: Dropout,
    /// The scaling `s` (`alpha / r`, or `alpha / sqrt(r)` with rsLoRA).
    pub scaling: f64,
}

impl LoraLinear {
    /// A new adapter from factors in Burn's orientation.
    pub fn new(a: Tensor<2>, b: Tensor<2>, scaling: f64, dropout: f64) -> Self {
        LoraLinear {
            lora_a: Param::from_tensor(a),
            lora_b: Param::from_tensor(b),
            dropout: DropoutConfig::new(dropout).init(),
            scaling,
        }
    }

    /// A new adapter from the Python library's tensors `lora_A.weight: [r, d_input]` and
    /// `lora_B.weight: [d_output, r]`.
    pub fn from_torch(a: TensorData, b: TensorData, scaling: f64, dropout: f64, device: &Device) -> Self {
        let a = Tensor::<2>::from_data(a, device).transpose();
        let b = Tensor::<2>::from_data(b, device).transpose();
        Self::new(a, b, scaling, dropout)
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.lora_a.shape().dims::<2>()[1]
    }

    /// `s * A B`, shape `[d_input, d_output]`: the change to the base weight.
    pub fn delta_weight(&self) -> Tensor<2> {
        self.lora_a.val().matmul(self.lora_b.val()).mul_scalar(self.scaling)
    }
}

impl LinearAdapter for LoraLinear {


    /// `y + s * (dropout(x) A) B`: rank-`r` intermediates only, never `W0 + s A B`.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, d_input]`, `y` and output: `[batch, tokens, d_output]`
    fn adapt_output(&self, x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        let hidden = linear(peft_core::dropout(&self.dropout, x.clone()), self.lora_a.val(), None);
        let delta = linear(hidden, self.lora_b.val(), None);
        y + delta.mul_scalar(self.scaling)
    }

    fn low_rank(&self) -> Option<LowRank> {
        Some(LowRank { a: self.lora_a.val(), b: self.lora_b.val(), scaling: self.scaling })
    }

    fn merge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        Ok((weight + self.delta_weight(), bias))
    }

    fn unmerge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        Ok((weight - self.delta_weight(), bias))
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        vec![
            ("lora_A.weight".into(), self.lora_a.val().transpose().into_data()),
            ("lora_B.weight".into(), self.lora_b.val().transpose().into_data()),
        ]
    }
}
