//! The BLOOM stack: MLP, block and `BloomModel` (embeddings to final LayerNorm).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::gelu_approximate;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedEmbedding, AdaptedLinear, AdapterSites, ModelDims, Result, SiteMut};
use std::path::Path;

use super::attention::{BloomAttention, alibi, alibi_slopes};
use super::config::BloomConfig;
use crate::cache::KvCache;
use crate::causal::{DecoderStack, load_transformer};
use crate::layers::{LayerNorm, causal_bias, embedding, full_key_mask, linear};

/// transformers' `BloomMLP`: `dense_4h_to_h(gelu(dense_h_to_4h(x)))`, GELU tanh-approximated.
#[derive(Module, Debug)]
pub struct BloomMlp {
    /// `hidden_size -> 4 * hidden_size`.
    pub dense_h_to_4h: AdaptedLinear,
    /// `4 * hidden_size -> hidden_size`.
    pub dense_4h_to_h: AdaptedLinear,
    /// Dropout before the residual (training only).
    pub hidden_dropout: Dropout,
}

impl BloomMlp {
    /// A new MLP for `config`.
    pub fn new(config: &BloomConfig, device: &Device) -> Self {
        let (h, std) = (config.hidden_size, config.initializer_range);
        BloomMlp {
            dense_h_to_4h: linear(h, 4 * h, true, std, device),
            dense_4h_to_h: linear(4 * h, h, true, std, device),
            hidden_dropout: DropoutConfig::new(config.hidden_dropout).init(),
        }
    }

    /// The feed-forward, before the residual.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, hidden_size]`, and the same out.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.hidden_dropout.forward(self.dense_4h_to_h.forward(gelu_approximate(self.dense_h_to_4h.forward(x))))
    }
}

/// transformers' `BloomBlock`, pre-norm: `h = r1 + attn(ln1(x)); out = r2 + mlp(ln2(h))` where the
/// residuals `r` are the block inputs `x`, `h`, or with `apply_residual_connection_post_layernorm`
/// the normed ones.
#[derive(Module, Debug)]
pub struct BloomBlock {
    /// Norm before attention.
    pub input_layernorm: LayerNorm,
    /// Self-attention.
    pub self_attention: BloomAttention,
    /// Norm before the MLP.
    pub post_attention_layernorm: LayerNorm,
    /// Feed-forward.
    pub mlp: BloomMlp,
    /// Whether the residuals are the normed inputs.
    #[module(skip)]
    pub residual_post_layernorm: bool,
}

impl BloomBlock {
    /// A new block for `config`.
    pub fn new(config: &BloomConfig, device: &Device) -> Self {
        let norm = || LayerNorm::new(config.hidden_size, config.layer_norm_epsilon, device);
        BloomBlock {
            input_layernorm: norm(),
            self_attention: BloomAttention::new(config, device),
            post_attention_layernorm: norm(),
            mlp: BloomMlp::new(config, device),
            residual_post_layernorm: config.apply_residual_connection_post_layernorm,
        }
    }

    fn forward(&self, x: Tensor<3>, bias: &Tensor<4>, cache: Option<(&mut KvCache, usize)>) -> Tensor<3> {
        let normed = self.input_layernorm.forward(x.clone());
        let residual = if self.residual_post_layernorm { normed.clone() } else { x };
        let h = residual + self.self_attention.forward(normed, bias, cache);
        let normed = self.post_attention_layernorm.forward(h.clone());
        let residual = if self.residual_post_layernorm { normed.clone() } else { h };
        residual + self.mlp.forward(normed)
    }
}

/// transformers' `BloomModel`: word embeddings and their LayerNorm, blocks, final LayerNorm.
///
/// Module paths are transformers' relative to the model (`word_embeddings`,
/// `h.0.self_attention.query_key_value`, `ln_f`); the task models put it under `transformer`.
#[derive(Module, Debug)]
pub struct BloomModel {
    /// Token embeddings, `[vocab_size, hidden_size]`.
    pub word_embeddings: AdaptedEmbedding,
    /// LayerNorm right after the lookup.
    pub word_embeddings_layernorm: LayerNorm,
    /// The blocks.
    pub h: Vec<BloomBlock>,
    /// The final norm.
    pub ln_f: LayerNorm,
    /// ALiBi slope per head (from the head count, not trained).
    #[module(skip)]
    pub slopes: Vec<f32>,
}

impl BloomModel {
    /// A new model for a validated `config`, weights drawn from `N(0, initializer_range)`.
    pub fn new(config: &BloomConfig, device: &Device) -> Self {
        let norm = || LayerNorm::new(config.hidden_size, config.layer_norm_epsilon, device);
        BloomModel {
            word_embeddings: embedding(config.vocab_size, config.hidden_size, config.initializer_range, device),
            word_embeddings_layernorm: norm(),
            h: (0..config.n_layer).map(|_| BloomBlock::new(config, device)).collect(),
            ln_f: norm(),
            slopes: alibi_slopes(config.n_head),
        }
    }

    /// Loads a transformers folder holding a bare `BloomModel` or any BLOOM task model (keys
    /// under `transformer.`; the head is ignored).
    ///
    /// # Errors
    /// As [`BloomConfig::from_file`], and the loader's ([`peft_core::Error::MissingTensor`],
    /// [`peft_core::Error::ShapeMismatch`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = BloomConfig::from_file(dir)?;
        load_transformer(Self::new(&config, device), dir, Vec::new())
    }

    /// Token embeddings (with any embedding adapter), before `word_embeddings_layernorm`.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`
    /// - output: `[batch, len, hidden_size]`
    pub fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        self.word_embeddings.forward(input_ids)
    }

    /// The last hidden state.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]` (mask 1 for real tokens)
    /// - output: `[batch, len, hidden_size]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.forward_embeds(self.embed(input_ids), attention_mask, None)
    }

    /// Runs the blocks on token embeddings (those of [`BloomModel::embed`], prompt vectors
    /// prepended, say) and returns the final hidden states.
    ///
    /// Padded keys (mask 0) never receive attention and do not count in ALiBi's positions, so a
    /// left-padded row computes what it would unpadded. With a `cache`, the tokens attend to the
    /// cached keys (masked by the cache's own mask) and are appended to it.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, hidden_size]`
    /// - `attention_mask`: `[batch, len]`, the new tokens only
    /// - output: `[batch, len, hidden_size]`
    pub fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, mut cache: Option<&mut KvCache>) -> Tensor<3> {
        let [batch, len, _] = embeds.dims();
        let device = embeds.device();
        let seen = cache.as_ref().map_or(0, |c| c.seen());
        let key_mask = full_key_mask(cache.as_deref(), attention_mask, batch, len, &device);
        let mut bias = alibi(&self.slopes, key_mask.as_ref(), seen + len, &device);
        if let Some(causal) = causal_bias(key_mask.as_ref(), seen, len, &device) {
            bias = bias + causal;
        }
        let mut x = self.word_embeddings_layernorm.forward(embeds);
        for (i, block) in self.h.iter().enumerate() {
            x = block.forward(x, &bias, cache.as_deref_mut().map(|c| (c, i)));
        }
        if let Some(cache) = cache {
            cache.advance(len, key_mask);
        }
        self.ln_f.forward(x)
    }

    /// An empty key/value cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.h.len())
    }

    /// Lists this model's adapter sites under `prefix` (`""` or `"transformer."`).
    pub(crate) fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f(&format!("{prefix}word_embeddings"), SiteMut::Embedding(&mut self.word_embeddings));
        for (i, block) in self.h.iter_mut().enumerate() {
            let at = |name: &str| format!("{prefix}h.{i}.{name}");
            f(&at("self_attention.query_key_value"), SiteMut::Linear(&mut block.self_attention.query_key_value));
            f(&at("self_attention.dense"), SiteMut::Linear(&mut block.self_attention.dense));
            f(&at("mlp.dense_h_to_4h"), SiteMut::Linear(&mut block.mlp.dense_h_to_4h));
            f(&at("mlp.dense_4h_to_h"), SiteMut::Linear(&mut block.mlp.dense_4h_to_h));
        }
    }
}

impl AdapterSites for BloomModel {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.visit_sites_prefixed("", f);
    }

    fn default_target_modules(&self) -> Vec<String> {
        <Self as DecoderStack>::default_targets()
    }

    fn model_type(&self) -> Option<String> {
        DecoderStack::model_type(self)
    }

    fn model_dims(&self) -> Option<ModelDims> {
        self.prompt_dims()
    }
}

/// ALiBi counts positions over real tokens, so the default cached forward already places a
/// left-padded row as it would be alone.
impl DecoderStack for BloomModel {
    type Config = BloomConfig;
    const EMBEDDINGS: &'static str = "word_embeddings";

    fn model_type(&self) -> Option<String> {
        Some("bloom".into())
    }

    fn build(config: &BloomConfig, device: &Device) -> Self {
        BloomModel::new(config, device)
    }

    fn embeddings(&self) -> &AdaptedEmbedding {
        &self.word_embeddings
    }

    fn num_layers(&self) -> usize {
        self.h.len()
    }

    fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        BloomModel::embed(self, input_ids)
    }

    fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: Option<&mut KvCache>) -> Tensor<3> {
        BloomModel::forward_embeds(self, embeds, attention_mask, cache)
    }

    fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        BloomModel::visit_sites_prefixed(self, prefix, f);
    }

    /// `hidden_size`, `n_layer`, `n_head` (key/value heads too), as the Python library reads them.
    fn prompt_dims(&self) -> Option<ModelDims> {
        let [vocab_size, hidden_size] = self.word_embeddings.base_layer.weight.dims();
        let heads = self.h.first()?.self_attention.num_heads;
        Some(ModelDims {
            hidden_size,
            num_layers: self.h.len(),
            num_attention_heads: heads,
            num_key_value_heads: heads,
            head_dim: hidden_size / heads,
            vocab_size,
            num_transformer_submodules: 1,
        })
    }

    fn default_targets() -> Vec<String> {
        vec!["query_key_value".into()]
    }
}
