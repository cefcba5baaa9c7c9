//! `LlamaForCausalLM`: the decoder with its language-modelling head, loading and generation.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedLinear, AdapterSites, Result, SiteMut};
use peft_io::weights::{LoadOptions, load_from_dir};
use std::path::Path;

use super::config::LlamaConfig;
use super::model::LlamaModel;
use crate::cache::KvCache;
use crate::causal::{DecoderLm, DecoderStack, new_lm_head, tie, tied_optional, tied_weights};
use crate::generation::{CausalLm, greedy};

/// transformers' `LlamaForCausalLM` (also `MistralForCausalLM`, `Qwen2ForCausalLM`).
///
/// With `tie_word_embeddings`, `lm_head` is still its own layer holding a copy of the embedding
/// table (transposed) made at construction and load: adapters can target either, and a full
/// fine-tune of one does not move the other.
#[derive(Module, Debug)]
pub struct LlamaForCausalLM {
    /// The decoder, at paths `model.*`.
    pub model: LlamaModel,
    /// `hidden_size -> vocab_size`, no bias.
    pub lm_head: AdaptedLinear,
    /// The config the model was built from.
    #[module(skip)]
    pub config: LlamaConfig,
}

impl LlamaForCausalLM {
    /// A new model for a validated `config`, weights drawn from `N(0, initializer_range)`.
    pub fn new(config: &LlamaConfig, device: &Device) -> Self {
        Self::build(config, true, device)
    }

    /// [`LlamaForCausalLM::new`], its head tied only with `tied` (loaders tie after loading).
    pub(crate) fn build(config: &LlamaConfig, tied: bool, device: &Device) -> Self {
        let model = LlamaModel::new(config, device);
        let lm_head = new_lm_head(config, &model, tied, device);
        LlamaForCausalLM { model, lm_head, config: config.clone() }
    }

    /// Loads a transformers folder: `config.json` and `model.safetensors` (or its sharded index).
    ///
    /// # Errors
    /// [`peft_core::Error::Io`] naming `config.json` or `model.safetensors` when missing, the
    /// config's errors ([`LlamaConfig::from_file`]), and the loader's
    /// ([`peft_core::Error::MissingTensor`], [`peft_core::Error::ShapeMismatch`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = LlamaConfig::from_file(dir.join("config.json"))?;
        Self::from_pretrained_with_config(dir, config, device)
    }

    /// Like [`LlamaForCausalLM::from_pretrained`] with a config given in code (the folder's
    /// `config.json` is not read).
    pub fn from_pretrained_with_config(dir: impl AsRef<Path>, mut config: LlamaConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        config.name_or_path.get_or_insert_with(|| dir.as_ref().display().to_string());
        let options = LoadOptions { prefixes: Vec::new(), optional: tied_optional(&config) };
        let mut model = load_from_dir(Self::build(&config, false, device), dir.as_ref(), &options)?;
        if config.tie_word_embeddings {
            tie(&mut model.lm_head, &model.model.embed_tokens);
        }
        Ok(model)
    }

    /// The config the model was built from.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// An empty key/value cache for this model.
    pub fn new_cache(&self) -> KvCache {
        CausalLm::new_cache(self)
    }

    /// Next-token logits.
    ///
    /// `attention_mask` is 1 for real tokens and 0 for padding (left or right); padded keys never
    /// receive attention; attention is causal. Positions are `0..len` in every row, as
    /// transformers' forward uses them.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`
    /// - `attention_mask`: `[batch, len]`
    /// - output: `[batch, len, vocab_size]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.logits_from_embeds(self.model.embed(input_ids), attention_mask, None)
    }

    /// Logits and transformers' causal LM loss: position `t` predicts `labels[t + 1]`, mean
    /// cross-entropy over labels that are not -100 ([`crate::layers::causal_lm_loss`]).
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`, `labels`: `[batch, len]`
    /// - outputs: `[batch, len, vocab_size]` and `[1]`
    pub fn forward_with_loss(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        labels: Tensor<2, Int>,
    ) -> (Tensor<3>, Tensor<1>) {
        self.logits_and_loss(input_ids, attention_mask, labels)
    }

    /// Logits from input embeddings (prompt tuning prepends its virtual tokens' vectors to
    /// [`LlamaModel::embed`]'s output), optionally after an already-seen prefix in `cache`
    /// (prefix tuning: [`KvCache::from_prefix`]; generation: the tokens so far). With a cache the
    /// new tokens take positions `cache.seen()..` and are appended to it.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, hidden_size]`
    /// - `attention_mask`: `[batch, len]`, the new tokens only (the cache keeps its own)
    /// - output: `[batch, len, vocab_size]`
    pub fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.logits_from_embeds(embeds, attention_mask, cache)
    }

    /// Logits for `input_ids` following the tokens already in `cache`, which they are appended to.
    /// With padding (in `attention_mask` or the cache's mask) a token's position is the number of
    /// real tokens before it ([`LlamaModel::forward_embeds`]).
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`
    /// - `attention_mask`: `[batch, len]`, the new tokens only
    /// - output: `[batch, len, vocab_size]`
    pub fn forward_cached(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, cache: &mut KvCache) -> Tensor<3> {
        CausalLm::forward_cached(self, input_ids, attention_mask, cache)
    }

    /// Greedy decoding with the key/value cache: up to `max_new_tokens` tokens per row, a row
    /// stopping after it emits `eos_token_id`. Returns the new tokens only (eos included).
    ///
    /// The first token is the argmax of [`LlamaForCausalLM::forward`]'s last logits.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`, unpadded (see [`LlamaForCausalLM::generate_greedy_masked`])
    pub fn generate_greedy(&self, input_ids: Tensor<2, Int>, max_new_tokens: usize, eos_token_id: Option<u32>) -> Vec<Vec<u32>> {
        greedy(self, input_ids, None, max_new_tokens, eos_token_id)
    }

    /// [`LlamaForCausalLM::generate_greedy`] for a left-padded batch: `attention_mask` is 1 for
    /// real tokens. Each row's positions start at its first real token, as transformers'
    /// `generate` places them, so a padded row yields what it would alone.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`
    pub fn generate_greedy_masked(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        max_new_tokens: usize,
        eos_token_id: Option<u32>,
    ) -> Vec<Vec<u32>> {
        greedy(self, input_ids, Some(attention_mask), max_new_tokens, eos_token_id)
    }
}

impl DecoderLm for LlamaForCausalLM {
    type Stack = LlamaModel;

    fn stack(&self) -> &LlamaModel {
        &self.model
    }

    fn lm_head(&self) -> &AdaptedLinear {
        &self.lm_head
    }
}

impl AdapterSites for LlamaForCausalLM {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.model.visit_sites_prefixed("model.", f);
        f("lm_head", SiteMut::Linear(&mut self.lm_head));
    }

    fn default_target_modules(&self) -> Vec<String> {
        <LlamaModel as DecoderStack>::default_targets()
    }

    fn model_type(&self) -> Option<String> {
        Some(self.config.model_type.clone())
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["lm_head".into()]
    }

    fn name_or_path(&self) -> Option<String> {
        self.config.name_or_path.clone()
    }

    fn model_dims(&self) -> Option<peft_core::ModelDims> {
        peft_core::TaskModel::dims(self).ok()
    }

    /// `[("lm_head.weight", "model.embed_tokens.weight")]` with tied embeddings, else none: the
    /// head holds a copy of the table, which parameter counts count once.
    fn tied_weights(&self) -> Vec<(String, String)> {
        tied_weights::<LlamaModel>(&self.config, "model.")
    }
}
