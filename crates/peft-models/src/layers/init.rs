//! Fresh layers drawn the way transformers initialises them (`N(0, initializer_range)`), for
//! models built from a config rather than loaded.

use burn::nn::{EmbeddingConfig, Initializer, LinearConfig};
use burn::tensor::Device;
use peft_core::{AdaptedEmbedding, AdaptedLinear};

/// A linear layer `d_input -> d_output` with weights drawn from `N(0, std)` (bias, if any, too).
pub fn linear(d_input: usize, d_output: usize, bias: bool, std: f64, device: &Device) -> AdaptedLinear {
    let init = Initializer::Normal { mean: 0.0, std };
    AdaptedLinear::from_linear(LinearConfig::new(d_input, d_output).with_bias(bias).with_initializer(init).init(device))
}

/// An embedding table `[rows, d_model]` drawn from `N(0, std)`.
pub fn embedding(rows: usize, d_model: usize, std: f64, device: &Device) -> AdaptedEmbedding {
    let init = Initializer::Normal { mean: 0.0, std };
    AdaptedEmbedding::from_embedding(EmbeddingConfig::new(rows, d_model).with_initializer(init).init(device))
}
