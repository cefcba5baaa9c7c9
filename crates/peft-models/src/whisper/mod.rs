//! Whisper (`WhisperForConditionalGeneration`, `WhisperModel`) from transformers' `config.json`
//! and safetensors, with every linear layer, the two front-end convolutions and the token
//! embedding an adapter site named by its transformers module path
//! (`model.encoder.conv1`, `model.encoder.layers.0.self_attn.q_proj`,
//! `model.decoder.layers.0.encoder_attn.v_proj`, `proj_out`).
//!
//! The encoder turns log-mel features `[batch, num_mel_bins, 2 * max_source_positions]` into
//! `max_source_positions` states (`gelu(conv1)`, `gelu(conv2)` with stride 2, sinusoidal
//! positions, pre-LN layers); the decoder adds learned positions offset by its cache length,
//! runs causal self-attention and cross-attention (keys and values of the encoding computed once
//! per generation) and a tied output projection.
//!
//! The Python library has no default `target_modules` for `whisper`, so
//! [`peft_core::AdapterSites::default_target_modules`] is empty here too: name them
//! (`["q_proj", "v_proj"]` is the usual choice).
//!
//! ```no_run
//! use burn::tensor::{Device, Tensor};
//! use peft_models::whisper::WhisperForConditionalGeneration;
//!
//! # fn main() -> peft_core::Result<()> {
//! let device = Device::default();
//! let model = WhisperForConditionalGeneration::from_pretrained("models/whisper-tiny", &device)?;
//! let features = Tensor::<3>::zeros([1, 80, 3000], &device); // log-mel features of 30 s of audio
//! let tokens = model.generate_greedy(features, 20)?;
//! # let _ = tokens;
//! # Ok(())
//! # }
//! ```

mod attention;
mod conditional;
mod config;
mod decoder;
mod encoder;
mod loss;
mod model;

pub use attention::WhisperAttention;
pub use conditional::WhisperForConditionalGeneration;
pub use config::{LAYER_NORM_EPS, SUPPORTED_MODEL_TYPES, WhisperConfig};
pub use decoder::{WhisperDecoder, WhisperDecoderLayer};
pub use encoder::{PositionTable, WhisperEncoder, WhisperEncoderLayer, sinusoids};
pub use crate::layers::seq2seq_lm_loss;
pub use loss::shift_tokens_right;
pub use model::WhisperModel;

/// What the decoder keeps between steps (transformers' `EncoderDecoderCache`): self-attention
/// keys and values of the decoder tokens, and the encoder output's cross-attention keys and values.
pub type WhisperCache = crate::generation::EncoderDecoderCache;

use burn::nn::conv::Conv1dConfig;
use burn::nn::{Initializer, PaddingConfig1d};
use burn::tensor::Device;
use peft_core::{AdaptedConv1d, AdaptedEmbedding, AdaptedLinear, SiteMut};

fn init(config: &WhisperConfig) -> Initializer {
    Initializer::Normal { mean: 0.0, std: config.init_std }
}

/// A linear layer with weights drawn from `N(0, init_std)` as transformers does.
fn linear(d_input: usize, d_output: usize, bias: bool, config: &WhisperConfig, device: &Device) -> AdaptedLinear {
    crate::layers::linear(d_input, d_output, bias, config.init_std, device)
}

/// An embedding table drawn from `N(0, init_std)`.
fn embedding(rows: usize, d_model: usize, config: &WhisperConfig, device: &Device) -> AdaptedEmbedding {
    crate::layers::embedding(rows, d_model, config.init_std, device)
}

/// A kernel-3, padding-1 convolution with the given stride, drawn from `N(0, init_std)`.
fn conv1d(channels_in: usize, channels_out: usize, stride: usize, config: &WhisperConfig, device: &Device) -> AdaptedConv1d {
    let conv = Conv1dConfig::new(channels_in, channels_out, 3)
        .with_stride(stride)
        .with_padding(PaddingConfig1d::Explicit(1, 1))
        .with_initializer(init(config))
        .init(device);
    AdaptedConv1d::from_conv(conv)
}

/// Lists an attention block's four projections under `at` (`...layers.0.self_attn`).
fn visit_attention(at: &str, attn: &mut WhisperAttention, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
    f(&format!("{at}.q_proj"), SiteMut::Linear(&mut attn.q_proj));
    f(&format!("{at}.k_proj"), SiteMut::Linear(&mut attn.k_proj));
    f(&format!("{at}.v_proj"), SiteMut::Linear(&mut attn.v_proj));
    f(&format!("{at}.out_proj"), SiteMut::Linear(&mut attn.out_proj));
}
