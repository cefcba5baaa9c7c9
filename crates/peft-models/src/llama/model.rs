//! The decoder stack: MLP, decoder layer and `LlamaModel` (embeddings to final norm).

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedEmbedding, AdaptedLinear, SiteMut};

use super::attention::{LlamaAttention, attention_bias};
use crate::cache::KvCache;
use super::config::LlamaConfig;
use crate::causal::DecoderStack;
use crate::layers::{RmsNorm, RotaryEmbedding, embedding, full_key_mask, linear};

/// transformers' `LlamaMLP`: `down_proj(silu(gate_proj(x)) * up_proj(x))`.
#[derive(Module, Debug)]
pub struct LlamaMlp {
    /// `hidden_size -> intermediate_size`, through SiLU.
    pub gate_proj: AdaptedLinear,
    /// `hidden_size -> intermediate_size`.
    pub up_proj: AdaptedLinear,
    /// `intermediate_size -> hidden_size`.
    pub down_proj: AdaptedLinear,
}

impl LlamaMlp {
    /// A new MLP for `config`.
    pub fn new(config: &LlamaConfig, device: &Device) -> Self {
        let (h, i, bias) = (config.hidden_size, config.intermediate_size, config.mlp_bias());
        LlamaMlp {
            gate_proj: linear(h, i, bias, config.initializer_range, device),
            up_proj: linear(h, i, bias, config.initializer_range, device),
            down_proj: linear(i, h, bias, config.initializer_range, device),
        }
    }

    /// The gated feed-forward.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, hidden_size]`, and the same out.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

/// One pre-norm decoder layer: `h = x + attn(norm1(x)); out = h + mlp(norm2(h))`.
#[derive(Module, Debug)]
pub struct LlamaDecoderLayer {
    /// Self-attention.
    pub self_attn: LlamaAttention,
    /// Feed-forward.
    pub mlp: LlamaMlp,
    /// Norm before attention.
    pub input_layernorm: RmsNorm,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm,
    /// Sliding-window width of this layer, `None` for full attention.
    #[module(skip)]
    pub sliding_window: Option<usize>,
}

impl LlamaDecoderLayer {
    /// Layer number `index` of `config`.
    pub fn new(config: &LlamaConfig, index: usize, device: &Device) -> Self {
        LlamaDecoderLayer {
            self_attn: LlamaAttention::new(config, device),
            mlp: LlamaMlp::new(config, device),
            input_layernorm: RmsNorm::new(config.hidden_size, config.rms_norm_eps, device),
            post_attention_layernorm: RmsNorm::new(config.hidden_size, config.rms_norm_eps, device),
            sliding_window: config.sliding_window_for_layer(index),
        }
    }

    fn forward(&self, x: Tensor<3>, rope: (&Tensor<4>, &Tensor<4>), bias: Option<&Tensor<5>>, cache: Option<(&mut KvCache, usize)>) -> Tensor<3> {
        let h = x.clone() + self.self_attn.forward(self.input_layernorm.forward(x), rope, bias, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// transformers' `LlamaModel`: token embeddings, decoder layers, final norm (no head).
///
/// Module paths are transformers' relative to the model (`embed_tokens`, `layers.0.self_attn.q_proj`,
/// `norm`); [`super::LlamaForCausalLM`] puts it under `model`.
#[derive(Module, Debug)]
pub struct LlamaModel {
    /// The token embedding table, `[vocab_size, hidden_size]`.
    pub embed_tokens: AdaptedEmbedding,
    /// The decoder layers.
    pub layers: Vec<LlamaDecoderLayer>,
    /// The final norm.
    pub norm: RmsNorm,
    /// RoPE frequencies (derived from the config, not trained).
    #[module(skip)]
    pub rope: RotaryEmbedding,
}

impl LlamaModel {
    /// A new model for a validated `config`, weights drawn from `N(0, initializer_range)`.
    ///
    /// An invalid RoPE config falls back to unscaled RoPE here; [`LlamaConfig::validate`] reports it.
    pub fn new(config: &LlamaConfig, device: &Device) -> Self {
        let (theta, scaling) = config.rope().unwrap_or((10000.0, crate::layers::RopeScaling::Default));
        LlamaModel {
            embed_tokens: embedding(config.vocab_size, config.hidden_size, config.initializer_range, device),
            layers: (0..config.num_hidden_layers).map(|i| LlamaDecoderLayer::new(config, i, device)).collect(),
            norm: RmsNorm::new(config.hidden_size, config.rms_norm_eps, device),
            rope: RotaryEmbedding::new(config.head_dim(), theta, &scaling),
        }
    }

    /// Looks up token embeddings (with any embedding adapter), for prompt methods that prepend
    /// their own vectors before calling [`LlamaModel::forward_embeds`].
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`
    /// - output: `[batch, len, hidden_size]`
    pub fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        self.embed_tokens.forward(input_ids)
    }

    /// Runs the decoder on input embeddings and returns the final hidden states.
    ///
    /// `attention_mask` is 1 for real tokens and 0 for padding; padded keys never receive
    /// attention. With a `cache`, the tokens attend to the cached keys (masked by the cache's own
    /// mask) and are appended to it; a token's position is the number of real keys before it
    /// (`cache.seen()..` without padding), as transformers' `generate` derives `position_ids`
    /// from the attention mask (`cumsum - 1`, padding at 0), so a left-padded row gets the
    /// positions it would have alone. Without a cache, positions are `0..len` in every row, as
    /// transformers' forward uses them.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, hidden_size]`
    /// - `attention_mask`: `[batch, len]`
    /// - output: `[batch, len, hidden_size]`
    pub fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, mut cache: Option<&mut KvCache>) -> Tensor<3> {
        let [batch, len, _] = embeds.dims();
        let device = embeds.device();
        let seen = cache.as_ref().map_or(0, |c| c.seen());
        let key_mask = full_key_mask(cache.as_deref(), attention_mask, batch, len, &device);
        let padded_positions = match (&cache, &key_mask) {
            (Some(_), Some(mask)) => left_padded_positions(mask, seen, len),
            _ => None,
        };
        let (cos, sin) = match padded_positions {
            Some(positions) => self.rope.cos_sin_at(&positions, batch, len, &device),
            None => self.rope.cos_sin(seen, len, &device),
        };
        let full = attention_bias(key_mask.as_ref(), seen, len, None, &device);
        // Layers with a sliding window get their own mask, built once per distinct width.
        let mut windowed: Vec<(usize, Option<Tensor<5>>)> = Vec::new();
        let mut x = embeds;
        for (i, layer) in self.layers.iter().enumerate() {
            let bias = match layer.sliding_window {
                None => full.as_ref(),
                Some(w) => {
                    if !windowed.iter().any(|(width, _)| *width == w) {
                        windowed.push((w, attention_bias(key_mask.as_ref(), seen, len, Some(w), &device)));
                    }
                    windowed.iter().find(|(width, _)| *width == w).and_then(|(_, b)| b.as_ref())
                }
            };
            x = layer.forward(x, (&cos, &sin), bias, cache.as_deref_mut().map(|c| (c, i)));
        }
        if let Some(cache) = cache {
            cache.advance(len, key_mask);
        }
        self.norm.forward(x)
    }

    /// Lists this model's adapter sites under `prefix` (`""` or `"model."`).
    pub(crate) fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f(&format!("{prefix}embed_tokens"), SiteMut::Embedding(&mut self.embed_tokens));
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let at = |name: &str| format!("{prefix}layers.{i}.{name}");
            let attn = &mut layer.self_attn;
            f(&at("self_attn.q_proj"), SiteMut::Linear(&mut attn.q_proj));
            f(&at("self_attn.k_proj"), SiteMut::Linear(&mut attn.k_proj));
            f(&at("self_attn.v_proj"), SiteMut::Linear(&mut attn.v_proj));
            f(&at("self_attn.o_proj"), SiteMut::Linear(&mut attn.o_proj));
            f(&at("self_attn"), SiteMut::Attention(&mut attn.hook));
            let mlp = &mut layer.mlp;
            f(&at("mlp.gate_proj"), SiteMut::Linear(&mut mlp.gate_proj));
            f(&at("mlp.up_proj"), SiteMut::Linear(&mut mlp.up_proj));
            f(&at("mlp.down_proj"), SiteMut::Linear(&mut mlp.down_proj));
        }
    }
}

impl peft_core::AdapterSites for LlamaModel {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.visit_sites_prefixed("", f);
    }
}

impl DecoderStack for LlamaModel {
    type Config = LlamaConfig;
    const EMBEDDINGS: &'static str = "embed_tokens";

    fn build(config: &LlamaConfig, device: &Device) -> Self {
        LlamaModel::new(config, device)
    }

    fn embeddings(&self) -> &AdaptedEmbedding {
        &self.embed_tokens
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        LlamaModel::embed(self, input_ids)
    }

    fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: Option<&mut KvCache>) -> Tensor<3> {
        LlamaModel::forward_embeds(self, embeds, attention_mask, cache)
    }

    fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        LlamaModel::visit_sites_prefixed(self, prefix, f);
    }

    fn default_targets() -> Vec<String> {
        vec!["q_proj".into(), "v_proj".into()]
    }
}

/// Each new token's position when some key is padding: how many real keys precede it, 0 for a
/// padding token (transformers' `generate`: `attention_mask.cumsum(-1) - 1`, padding filled with
/// 0). `None` when no key is padding, so the positions are plainly `seen..seen + len`.
///
/// Reads the mask back to the host: positions feed the host-computed RoPE table.
fn left_padded_positions(key_mask: &Tensor<2, Int>, seen: usize, len: usize) -> Option<Vec<usize>> {
    let [batch, keys] = key_mask.dims();
    let mask = key_mask.clone().into_data().convert::<i64>().try_into_vec::<i64>().ok()?;
    if mask.iter().all(|m| *m != 0) || keys != seen + len {
        return None;
    }
    let mut positions = Vec::with_capacity(batch * len);
    for row in mask.chunks(keys) {
        let mut real_before = row[..seen].iter().filter(|m| **m != 0).count();
        for &m in &row[seen..] {
            positions.push(if m != 0 { real_before } else { 0 });
            real_before += usize::from(m != 0);
        }
    }
    Some(positions)
}
