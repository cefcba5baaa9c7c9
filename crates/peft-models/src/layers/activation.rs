//! The feed-forward activations transformers' configs name (`hidden_act`, `activation_function`).

use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, gelu_approximate, relu};
use serde::{Deserialize, Serialize};

/// The activation of the feed-forward block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HiddenAct {
    /// Exact GELU: `x * 0.5 * (1 + erf(x / sqrt(2)))`.
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// Tanh-approximated GELU (transformers' `gelu_new` and `gelu_pytorch_tanh`).
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
    /// `max(x, 0)`.
    #[serde(rename = "relu")]
    Relu,
}

impl HiddenAct {
    /// Applies the activation elementwise.
    ///
    /// # Shapes
    /// - `x`: any, and the same out.
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            HiddenAct::Gelu => gelu(x),
            HiddenAct::GeluTanh => gelu_approximate(x),
            HiddenAct::Relu => relu(x),
        }
    }
}
