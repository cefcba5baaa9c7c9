//! SegFormer (MiT encoder, all-MLP decode head) for semantic segmentation and image classification.
//!
//! Each stage embeds overlapping patches with a strided [`peft_core::AdaptedConv2d`] and runs
//! layers of efficient self-attention (keys and values from a grid shrunk by a strided
//! convolution) and a Mix-FFN (dense, depthwise 3x3 convolution, activation, dense). The decode
//! head projects every stage, upsamples bilinearly to the first stage's grid (a quarter of the
//! input), fuses them and classifies each pixel. Module paths are transformers 5's
//! (`segformer.stages.0.blocks.0.attention.q_proj`, `decode_head.linear_projections.0.proj`);
//! checkpoints with the legacy keys (`segformer.encoder.block.0.0.attention.self.query`,
//! `decode_head.linear_c.0.proj`) are renamed on load.
//!
//! ```no_run
//! use burn::tensor::{Device, Distribution, Tensor};
//! use peft_models::segformer::SegformerForSemanticSegmentation;
//!
//! # fn main() -> peft_core::Result<()> {
//! let device = Device::default();
//! let model = SegformerForSemanticSegmentation::from_pretrained("models/segformer-b0-ade", &device)?;
//! let pixels = Tensor::<4>::random([1, 3, 512, 512], Distribution::Normal(0.0, 1.0), &device);
//! let logits = model.forward(pixels); // [1, num_labels, 128, 128]
//! # let _ = logits;
//! # Ok(())
//! # }
//! ```

mod config;
mod encoder;
mod head;
mod load;
mod model;

pub use config::{SUPPORTED_MODEL_TYPES, SegformerConfig};
pub use encoder::{SegformerAttention, SegformerDepthWiseConv, SegformerLayer, SegformerMixMlp, SegformerSequenceReduction};
pub use head::{SegformerDecodeHead, SegformerForSemanticSegmentation, SegformerMlp, pixel_cross_entropy, resize_bilinear};
pub use model::{SegformerForImageClassification, SegformerModel, SegformerOverlapPatchEmbeddings, SegformerStage};

use burn::nn::conv::Conv2dConfig;
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::Device;
use peft_core::{AdaptedConv2d, AdaptedLinear};

use crate::layers::LayerNorm;

/// A linear layer with bias, weights drawn from `N(0, initializer_range)`.
fn linear(d_input: usize, d_output: usize, config: &SegformerConfig, device: &Device) -> AdaptedLinear {
    crate::layers::linear(d_input, d_output, true, config.initializer_range, device)
}

/// A square-strided convolution with symmetric padding and `groups`.
#[allow(clippy::too_many_arguments)]
fn conv2d(
    c_in: usize,
    c_out: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: usize,
    groups: usize,
    bias: bool,
    config: &SegformerConfig,
    device: &Device,
) -> AdaptedConv2d {
    let init = Initializer::Normal { mean: 0.0, std: config.initializer_range };
    let conv = Conv2dConfig::new([c_in, c_out], kernel)
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
        .with_groups(groups)
        .with_bias(bias)
        .with_initializer(init)
        .init(device);
    AdaptedConv2d::from_conv(conv)
}

/// SegFormer's LayerNorms are `nn.LayerNorm(width)`: PyTorch's eps 1e-5, whatever the config's
/// `layer_norm_eps` says (transformers does not pass it).
fn layer_norm(width: usize, device: &Device) -> LayerNorm {
    LayerNorm::new(width, 1e-5, device)
}
