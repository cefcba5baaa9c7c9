//! The GPT-2 stack: MLP, block and `Gpt2Model` (embeddings to final LayerNorm).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedEmbedding, AdaptedLinear, AdapterSites, ModelDims, Result, SiteMut};
use std::path::Path;

use super::attention::Gpt2Attention;
use super::config::Gpt2Config;
use crate::cache::KvCache;
use crate::causal::{DecoderStack, load_transformer};
use crate::layers::{HiddenAct, LayerNorm, causal_bias, embedding, full_key_mask, real_positions};

/// transformers' `GPT2MLP`: `c_proj(act(c_fc(x)))`, both Conv1D.
#[derive(Module, Debug)]
pub struct Gpt2Mlp {
    /// `n_embd -> inner_dim`.
    pub c_fc: AdaptedLinear,
    /// `inner_dim -> n_embd`.
    pub c_proj: AdaptedLinear,
    /// Dropout after `c_proj` (training only).
    pub dropout: Dropout,
    /// The activation (`gelu_new` for GPT-2).
    #[module(skip)]
    pub act: HiddenAct,
}

impl Gpt2Mlp {
    /// A new MLP for `config`.
    pub fn new(config: &Gpt2Config, device: &Device) -> Self {
        let (h, i, std) = (config.n_embd, config.inner_dim(), config.initializer_range);
        Gpt2Mlp {
            c_fc: super::conv1d(h, i, std, device),
            c_proj: super::conv1d(i, h, std, device),
            dropout: DropoutConfig::new(config.resid_pdrop).init(),
            act: config.activation_function,
        }
    }

    /// The feed-forward.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, n_embd]`, and the same out.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.dropout.forward(self.c_proj.forward(self.act.forward(self.c_fc.forward(x))))
    }
}

/// transformers' `GPT2Block`, pre-norm: `h = x + attn(ln_1(x)); out = h + mlp(ln_2(h))`.
#[derive(Module, Debug)]
pub struct Gpt2Block {
    /// Norm before attention.
    pub ln_1: LayerNorm,
    /// Self-attention.
    pub attn: Gpt2Attention,
    /// Norm before the MLP.
    pub ln_2: LayerNorm,
    /// Feed-forward.
    pub mlp: Gpt2Mlp,
}

impl Gpt2Block {
    /// Block number `layer` of `config`.
    pub fn new(config: &Gpt2Config, layer: usize, device: &Device) -> Self {
        let norm = || LayerNorm::new(config.n_embd, config.layer_norm_epsilon, device);
        Gpt2Block { ln_1: norm(), attn: Gpt2Attention::new(config, layer, device), ln_2: norm(), mlp: Gpt2Mlp::new(config, device) }
    }

    fn forward(&self, x: Tensor<3>, bias: Option<&Tensor<4>>, cache: Option<(&mut KvCache, usize)>) -> Tensor<3> {
        let h = x.clone() + self.attn.forward(self.ln_1.forward(x), bias, cache);
        h.clone() + self.mlp.forward(self.ln_2.forward(h))
    }
}

/// transformers' `GPT2Model`: token and learned position embeddings, blocks, final LayerNorm.
///
/// Module paths are transformers' relative to the model (`wte`, `h.0.attn.c_attn`, `ln_f`); the
/// task models put it under `transformer`.
#[derive(Module, Debug)]
pub struct Gpt2Model {
    /// Token embeddings, `[vocab_size, n_embd]`.
    pub wte: AdaptedEmbedding,
    /// Position embeddings, `[n_positions, n_embd]`.
    pub wpe: AdaptedEmbedding,
    /// Dropout on the summed embeddings (training only).
    pub drop: Dropout,
    /// The blocks.
    pub h: Vec<Gpt2Block>,
    /// The final norm.
    pub ln_f: LayerNorm,
}

impl Gpt2Model {
    /// A new model for a validated `config`, weights drawn from `N(0, initializer_range)`.
    pub fn new(config: &Gpt2Config, device: &Device) -> Self {
        let std = config.initializer_range;
        Gpt2Model {
            wte: embedding(config.vocab_size, config.n_embd, std, device),
            wpe: embedding(config.n_positions, config.n_embd, std, device),
            drop: DropoutConfig::new(config.embd_pdrop).init(),
            h: (0..config.n_layer).map(|i| Gpt2Block::new(config, i, device)).collect(),
            ln_f: LayerNorm::new(config.n_embd, config.layer_norm_epsilon, device),
        }
    }

    /// Loads a transformers folder holding a bare `GPT2Model` or any GPT-2 task model (keys
    /// under `transformer.`; the head is ignored).
    ///
    /// # Errors
    /// As [`super::Gpt2Config::from_file`], and the loader's ([`peft_core::Error::MissingTensor`],
    /// [`peft_core::Error::ShapeMismatch`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = Gpt2Config::from_file(dir)?;
        load_transformer(Self::new(&config, device), dir, Vec::new())
    }

    /// Token embeddings (with any embedding adapter), for prompt methods that prepend their own
    /// vectors before calling [`Gpt2Model::forward_embeds`].
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`
    /// - output: `[batch, len, n_embd]`
    pub fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        self.wte.forward(input_ids)
    }

    /// The last hidden state; positions are `0..len` in every row, as transformers' forward has them.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]` (mask 1 for real tokens)
    /// - output: `[batch, len, n_embd]`
    ///
    /// # Panics
    /// When an id or a position is outside its table (`len > n_positions`), as the lookup does.
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.forward_embeds(self.embed(input_ids), attention_mask, None)
    }

    /// Runs the blocks on token embeddings at positions `seen..seen + len` (`seen` = the cache's
    /// length, 0 without one). See [`Gpt2Model::forward_embeds_at`].
    pub fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.forward_embeds_at(embeds, attention_mask, cache, None)
    }

    /// Runs the blocks on token embeddings and returns the final hidden states.
    ///
    /// `position_ids` pick the rows of `wpe` (transformers' argument of that name); `None` gives
    /// `seen..seen + len` in every row. Padded keys (mask 0) never receive attention. With a
    /// `cache`, the tokens attend to the cached keys (masked by the cache's own mask) and are
    /// appended to it.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, n_embd]`
    /// - `attention_mask`: `[batch, len]`, the new tokens only
    /// - `position_ids`: `[batch or 1, len]`
    /// - output: `[batch, len, n_embd]`
    pub fn forward_embeds_at(
        &self,
        embeds: Tensor<3>,
        attention_mask: Option<Tensor<2, Int>>,
        mut cache: Option<&mut KvCache>,
        position_ids: Option<Tensor<2, Int>>,
    ) -> Tensor<3> {
        let [batch, len, _] = embeds.dims();
        let device = embeds.device();
        let seen = cache.as_ref().map_or(0, |c| c.seen());
        let key_mask = full_key_mask(cache.as_deref(), attention_mask, batch, len, &device);
        let positions = position_ids.unwrap_or_else(|| Tensor::<1, Int>::arange(seen as i64..(seen + len) as i64, &device).reshape([1, len]));
        let bias = causal_bias(key_mask.as_ref(), seen, len, &device);
        let mut x = self.drop.forward(embeds + self.wpe.forward(positions));
        for (i, block) in self.h.iter().enumerate() {
            x = block.forward(x, bias.as_ref(), cache.as_deref_mut().map(|c| (c, i)));
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
        f(&format!("{prefix}wte"), SiteMut::Embedding(&mut self.wte));
        f(&format!("{prefix}wpe"), SiteMut::Embedding(&mut self.wpe));
        for (i, block) in self.h.iter_mut().enumerate() {
            let at = |name: &str| format!("{prefix}h.{i}.{name}");
            f(&at("attn"), SiteMut::Attention(&mut block.attn.hook));
            f(&at("attn.c_attn"), SiteMut::Linear(&mut block.attn.c_attn));
            f(&at("attn.c_proj"), SiteMut::Linear(&mut block.attn.c_proj));
            f(&at("mlp.c_fc"), SiteMut::Linear(&mut block.mlp.c_fc));
            f(&at("mlp.c_proj"), SiteMut::Linear(&mut block.mlp.c_proj));
        }
    }
}

impl AdapterSites for Gpt2Model {
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

impl DecoderStack for Gpt2Model {
    type Config = Gpt2Config;
    const EMBEDDINGS: &'static str = "wte";

    fn model_type(&self) -> Option<String> {
        Some("gpt2".into())
    }

    fn build(config: &Gpt2Config, device: &Device) -> Self {
        Gpt2Model::new(config, device)
    }

    fn embeddings(&self) -> &AdaptedEmbedding {
        &self.wte
    }

    fn num_layers(&self) -> usize {
        self.h.len()
    }

    fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        Gpt2Model::embed(self, input_ids)
    }

    fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: Option<&mut KvCache>) -> Tensor<3> {
        Gpt2Model::forward_embeds(self, embeds, attention_mask, cache)
    }

    /// Each token's position is its index among the real (mask 1) tokens so far, as transformers'
    /// `generate` gives GPT-2 `position_ids`: a left-padded row starts at 0 like an unpadded one.
    fn forward_cached(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, cache: &mut KvCache) -> Tensor<3> {
        self.forward_embeds_cached(Gpt2Model::embed(self, input_ids), attention_mask, cache)
    }

    /// As [`DecoderStack::forward_cached`]: positions counted over real tokens, virtual ones
    /// (a prompt or a prefix in the cache, mask 1) included.
    fn forward_embeds_cached(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: &mut KvCache) -> Tensor<3> {
        let [batch, len, _] = embeds.dims();
        let seen = cache.seen();
        let full = full_key_mask(Some(cache), attention_mask.clone(), batch, len, &embeds.device());
        let positions = full.map(|m| real_positions(m).narrow(1, seen, len));
        self.forward_embeds_at(embeds, attention_mask, Some(cache), positions)
    }

    /// `n_embd`, `n_layer`, `n_head` (key/value heads too), as the Python library reads them.
    fn max_positions(&self) -> Option<usize> {
        Some(self.wpe.dims()[0])
    }

    fn prompt_dims(&self) -> Option<ModelDims> {
        let [vocab_size, hidden_size] = self.wte.base_layer.weight.dims();
        let heads = self.h.first()?.attn.num_heads;
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

    fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        Gpt2Model::visit_sites_prefixed(self, prefix, f);
    }

    fn default_targets() -> Vec<String> {
        vec!["c_attn".into()]
    }
}
