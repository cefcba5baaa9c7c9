//! ViT (Vision Transformer) for feature extraction and image classification.
//!
//! The image is cut into patches by a strided [`peft_core::AdaptedConv2d`]
//! (`embeddings.patch_embeddings.projection`), a CLS vector is prepended and position embeddings
//! added, then pre-LayerNorm encoder layers run. Module paths are those of transformers 5's
//! `named_modules()` (`vit.layers.0.attention.q_proj`, `vit.layers.0.mlp.fc1`), which the
//! Python library's adapter files use; checkpoints keep transformers' legacy keys
//! (`vit.encoder.layer.0.attention.attention.query`) and are renamed on load.
//!
//! ```no_run
//! use burn::tensor::{Device, Distribution, Tensor};
//! use peft_models::vit::ViTForImageClassification;
//!
//! # fn main() -> peft_core::Result<()> {
//! let device = Device::default();
//! let model = ViTForImageClassification::from_pretrained("models/vit-base-patch16-224", &device)?;
//! let pixels = Tensor::<4>::random([1, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
//! let logits = model.forward(pixels)?; // [1, num_labels]
//! # let _ = logits;
//! # Ok(())
//! # }
//! ```

mod config;
mod embeddings;
mod layer;
mod load;
mod model;

pub use config::{SUPPORTED_MODEL_TYPES, Size2d, ViTConfig};
pub use embeddings::{ViTEmbeddings, ViTPatchEmbeddings};
pub use layer::{ViTAttention, ViTLayer, ViTMlp};
pub use model::{ViTForImageClassification, ViTModel, ViTPooler};


use burn::nn::conv::Conv2dConfig;
use burn::nn::Initializer;
use burn::tensor::Device;
use peft_core::{AdaptedConv2d, AdaptedLinear};

/// A linear layer, weights drawn from `N(0, initializer_range)` as transformers does.
fn linear(d_input: usize, d_output: usize, bias: bool, config: &ViTConfig, device: &Device) -> AdaptedLinear {
    crate::layers::linear(d_input, d_output, bias, config.initializer_range, device)
}

/// An unpadded convolution with bias, weights drawn from `N(0, initializer_range)`.
fn conv2d(c_in: usize, c_out: usize, kernel: [usize; 2], stride: [usize; 2], config: &ViTConfig, device: &Device) -> AdaptedConv2d {
    let init = Initializer::Normal { mean: 0.0, std: config.initializer_range };
    AdaptedConv2d::from_conv(Conv2dConfig::new([c_in, c_out], kernel).with_stride(stride).with_initializer(init).init(device))
}
