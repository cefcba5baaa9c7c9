//! The audio encoder: convolutional front end, sinusoidal positions, pre-LN layers.

use burn::module::{Module, Param};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor, TensorData};
use peft_core::{AdaptedConv1d, AdaptedLinear, Error, Result, SiteMut};

use super::attention::WhisperAttention;
use super::config::{LAYER_NORM_EPS, WhisperConfig};
use crate::layers::LayerNorm;

/// A table of position vectors read by row (`embed_positions.weight` in the checkpoint). Not an
/// adapter site: transformers slices its weight directly instead of calling the embedding.
#[derive(Module, Debug)]
pub struct PositionTable {
    /// `[positions, d_model]`.
    pub weight: Param<Tensor<2>>,
}

impl PositionTable {
    /// Rows `start..start + len`; rows past the table repeat its last row (callers that take
    /// user input check the length first).
    ///
    /// # Shapes
    /// - output: `[len, d_model]`
    pub fn rows(&self, start: usize, len: usize) -> Tensor<2> {
        let weight = self.weight.val();
        let [positions, _] = weight.dims();
        if start + len <= positions {
            return weight.narrow(0, start, len);
        }
        let device = weight.device();
        let index: Vec<i64> = (start..start + len).map(|p| p.min(positions.saturating_sub(1)) as i64).collect();
        weight.select(0, Tensor::from_data(TensorData::new(index, [len]), &device))
    }
}

/// OpenAI's sinusoidal position table: row `t` is `[sin(t w_0) .. sin(t w_{c-1}), cos(t w_0) ..]`
/// with `c = channels / 2` and `w_i = 10000^(-i / (c - 1))`.
///
/// # Shapes
/// - output: `[length, channels]` (`channels` even, at least 4)
pub fn sinusoids(length: usize, channels: usize, device: &Device) -> Tensor<2> {
    let half = channels / 2;
    let increment = 10000f64.ln() / (half.max(2) - 1) as f64;
    let mut table = vec![0f32; length * channels];
    for t in 0..length {
        for i in 0..half {
            // In f32 as PyTorch computes it, so the table equals the checkpoint's bit for bit.
            let angle = t as f32 * (-(increment as f32) * i as f32).exp();
            table[t * channels + i] = angle.sin();
            table[t * channels + half + i] = angle.cos();
        }
    }
    Tensor::from_data(TensorData::new(table, [length, channels]), device)
}

/// transformers' `WhisperEncoderLayer`: `h = x + self_attn(ln(x)); out = h + fc2(gelu(fc1(ln(h))))`.
#[derive(Module, Debug)]
pub struct WhisperEncoderLayer {
    /// Self-attention.
    pub self_attn: WhisperAttention,
    /// Norm before attention.
    pub self_attn_layer_norm: LayerNorm,
    /// `d_model -> encoder_ffn_dim`.
    pub fc1: AdaptedLinear,
    /// `encoder_ffn_dim -> d_model`.
    pub fc2: AdaptedLinear,
    /// Norm before the MLP.
    pub final_layer_norm: LayerNorm,
}

impl WhisperEncoderLayer {
    /// A new layer for `config`.
    pub fn new(config: &WhisperConfig, device: &Device) -> Self {
        let (d, ffn) = (config.d_model, config.encoder_ffn_dim);
        WhisperEncoderLayer {
            self_attn: WhisperAttention::new(config, config.encoder_attention_heads, device),
            self_attn_layer_norm: LayerNorm::new(d, LAYER_NORM_EPS, device),
            fc1: super::linear(d, ffn, true, config, device),
            fc2: super::linear(ffn, d, true, config, device),
            final_layer_norm: LayerNorm::new(d, LAYER_NORM_EPS, device),
        }
    }

    /// One layer, attending over every position.
    ///
    /// # Shapes
    /// - `x`: `[batch, positions, d_model]`, and the same out
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = x.clone() + self.self_attn.forward_self(self.self_attn_layer_norm.forward(x), None, None);
        h.clone() + self.fc2.forward(gelu(self.fc1.forward(self.final_layer_norm.forward(h))))
    }
}

/// transformers' `WhisperEncoder`: `gelu(conv1)`, `gelu(conv2)` (stride 2), plus sinusoidal
/// positions, the layers, a final LayerNorm.
#[derive(Module, Debug)]
pub struct WhisperEncoder {
    /// `num_mel_bins -> d_model`, kernel 3, padding 1.
    pub conv1: AdaptedConv1d,
    /// `d_model -> d_model`, kernel 3, stride 2, padding 1.
    pub conv2: AdaptedConv1d,
    /// The sinusoidal positions, `[max_source_positions, d_model]` (frozen in transformers).
    pub embed_positions: PositionTable,
    /// The layers.
    pub layers: Vec<WhisperEncoderLayer>,
    /// The final norm.
    pub layer_norm: LayerNorm,
}

impl WhisperEncoder {
    /// A new encoder for a validated `config`: weights from `N(0, init_std)`, positions sinusoidal.
    pub fn new(config: &WhisperConfig, device: &Device) -> Self {
        let d = config.d_model;
        WhisperEncoder {
            conv1: super::conv1d(config.num_mel_bins, d, 1, config, device),
            conv2: super::conv1d(d, d, 2, config, device),
            embed_positions: PositionTable { weight: Param::from_tensor(sinusoids(config.max_source_positions, d, device)) },
            layers: (0..config.encoder_layers).map(|_| WhisperEncoderLayer::new(config, device)).collect(),
            layer_norm: LayerNorm::new(d, LAYER_NORM_EPS, device),
        }
    }

    /// Encodes log-mel features into `max_source_positions` hidden states.
    ///
    /// Fails with [`Error::ShapeMismatch`] unless the features are `[batch, num_mel_bins,
    /// 2 * max_source_positions]` (transformers requires the same; pad or cut the audio first).
    ///
    /// # Shapes
    /// - `input_features`: `[batch, num_mel_bins, 2 * max_source_positions]`
    /// - output: `[batch, max_source_positions, d_model]`
    pub fn forward(&self, input_features: Tensor<3>) -> Result<Tensor<3>> {
        let [batch, mels, frames] = input_features.dims();
        let [positions, d_model] = self.embed_positions.weight.dims();
        let in_channels = self.conv1.base_layer.weight.dims()[1];
        if mels != in_channels || frames != 2 * positions {
            return Err(Error::ShapeMismatch {
                path: "model.encoder".into(),
                tensor: "input_features".into(),
                expected: vec![batch, in_channels, 2 * positions],
                actual: vec![batch, mels, frames],
            });
        }
        // The features in the model's float type (f16/bf16 when its weights were cast).
        let input_features = input_features.cast(self.conv1.weight_dtype());
        let x = gelu(self.conv1.forward(input_features));
        let x = gelu(self.conv2.forward(x)).swap_dims(1, 2);
        let mut x = x + self.embed_positions.weight.val().reshape([1, positions, d_model]);
        for layer in &self.layers {
            x = layer.forward(x);
        }
        Ok(self.layer_norm.forward(x))
    }

    /// Lists the encoder's adapter sites under `prefix` (`"encoder."` or `"model.encoder."`).
    pub(crate) fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f(&format!("{prefix}conv1"), SiteMut::Conv1d(&mut self.conv1));
        f(&format!("{prefix}conv2"), SiteMut::Conv1d(&mut self.conv2));
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let at = |name: &str| format!("{prefix}layers.{i}.{name}");
            super::visit_attention(&at("self_attn"), &mut layer.self_attn, f);
            f(&at("fc1"), SiteMut::Linear(&mut layer.fc1));
            f(&at("fc2"), SiteMut::Linear(&mut layer.fc2));
        }
    }
}
