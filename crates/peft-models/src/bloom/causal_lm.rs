//! `BloomForCausalLM`: the stack with its tied language-modelling head, loading and generation.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedLinear, AdapterSites, Result, SiteMut};
use std::path::Path;

use super::config::BloomConfig;
use super::model::BloomModel;
use crate::cache::KvCache;
use crate::generation::{CausalLm, greedy};
use crate::layers::causal_lm_loss;

/// transformers' `BloomForCausalLM`.
///
/// With `tie_word_embeddings` (BLOOM's default), `lm_head` is still its own layer holding a copy
/// of `word_embeddings` (transposed) made at construction and load, as [`crate::llama::LlamaForCausalLM`] does.
#[derive(Module, Debug)]
pub struct BloomForCausalLM {
    /// The stack, at paths `transformer.*`.
    pub transformer: BloomModel,
    /// `hidden_size -> vocab_size`, no bias.
    pub lm_head: AdaptedLinear,
    /// The config the model was built from.
    #[module(skip)]
    pub config: BloomConfig,
}

impl BloomForCausalLM {
    /// A new model for a validated `config`, weights drawn from `N(0, initializer_range)`.
    pub fn new(config: &BloomConfig, device: &Device) -> Self {
        let transformer = BloomModel::new(config, device);
        let mut lm_head = super::linear(config.hidden_size, config.vocab_size, false, config.initializer_range, device);
        if config.tie_word_embeddings {
            lm_head = super::tie(lm_head, &transformer.word_embeddings);
        }
        BloomForCausalLM { transformer, lm_head, config: config.clone() }
    }

    /// Loads a transformers folder: `config.json` and `model.safetensors` (or its sharded index).
    ///
    /// # Errors
    /// [`peft_core::Error::Io`] naming `config.json` or `model.safetensors` when missing, the
    /// config's errors ([`BloomConfig::from_file`]), and the loader's
    /// ([`peft_core::Error::MissingTensor`], [`peft_core::Error::ShapeMismatch`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        Self::from_pretrained_with_config(dir, BloomConfig::from_file(dir)?, device)
    }

    /// Like [`BloomForCausalLM::from_pretrained`] with a config given in code (the folder's
    /// `config.json` is not read).
    pub fn from_pretrained_with_config(dir: impl AsRef<Path>, config: BloomConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let optional = if config.tie_word_embeddings { vec!["lm_head.weight".to_string()] } else { Vec::new() };
        let mut model = super::load(Self::new(&config, device), dir.as_ref(), optional)?;
        if config.tie_word_embeddings {
            model.lm_head = super::tie(model.lm_head, &model.transformer.word_embeddings);
        }
        Ok(model)
    }

    /// The config the model was built from.
    pub fn config(&self) -> &BloomConfig {
        &self.config
    }

    /// An empty key/value cache for this model.
    pub fn new_cache(&self) -> KvCache {
        self.transformer.new_cache()
    }

    /// Next-token logits.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]` (mask 1 for real tokens)
    /// - output: `[batch, len, vocab_size]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.forward_embeds(self.transformer.embed(input_ids), attention_mask, None)
    }

    /// Logits and transformers' causal LM loss ([`crate::layers::causal_lm_loss`]).
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`, `labels`: `[batch, len]`
    /// - outputs: `[batch, len, vocab_size]` and `[1]`
    pub fn forward_with_loss(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, labels: Tensor<2, Int>) -> (Tensor<3>, Tensor<1>) {
        let logits = self.forward(input_ids, attention_mask);
        (logits.clone(), causal_lm_loss(logits, labels))
    }

    /// Logits from input embeddings ([`BloomModel::embed`], with prompt vectors prepended, say),
    /// optionally after an already-seen prefix in `cache`, to which the new tokens are appended.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, hidden_size]`
    /// - `attention_mask`: `[batch, len]`, the new tokens only (the cache keeps its own)
    /// - output: `[batch, len, vocab_size]`
    pub fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.lm_head.forward(self.transformer.forward_embeds(embeds, attention_mask, cache))
    }

    /// Logits for `input_ids` following the tokens in `cache`, which they are appended to.
    /// ALiBi counts positions over real tokens, so left padding changes nothing.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`, the new tokens only
    /// - output: `[batch, len, vocab_size]`
    pub fn forward_cached(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, cache: &mut KvCache) -> Tensor<3> {
        self.forward_embeds(self.transformer.embed(input_ids), attention_mask, Some(cache))
    }

    /// Greedy decoding with the key/value cache ([`crate::generation::greedy`]): up to
    /// `max_new_tokens` new tokens per row, a row stopping after `eos_token_id`. Returns the new
    /// tokens only (eos included).
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`, unpadded (see [`BloomForCausalLM::generate_greedy_masked`])
    pub fn generate_greedy(&self, input_ids: Tensor<2, Int>, max_new_tokens: usize, eos_token_id: Option<u32>) -> Vec<Vec<u32>> {
        greedy(self, input_ids, None, max_new_tokens, eos_token_id)
    }

    /// [`BloomForCausalLM::generate_greedy`] for a left-padded batch: `attention_mask` is 1 for real
    /// tokens; each row generates what it would alone.
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

impl CausalLm for BloomForCausalLM {
    type Cache = KvCache;

    fn new_cache(&self) -> KvCache {
        BloomForCausalLM::new_cache(self)
    }

    fn forward_cached(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, cache: &mut KvCache) -> Tensor<3> {
        BloomForCausalLM::forward_cached(self, input_ids, attention_mask, cache)
    }
}

impl AdapterSites for BloomForCausalLM {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.transformer.visit_sites_prefixed("transformer.", f);
        f("lm_head", SiteMut::Linear(&mut self.lm_head));
    }

    fn default_target_modules(&self) -> Vec<String> {
        super::default_target_modules()
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["lm_head".into()]
    }

    /// `[("lm_head.weight", "transformer.word_embeddings.weight")]` with tied embeddings, else none.
    fn tied_weights(&self) -> Vec<(String, String)> {
        if self.config.tie_word_embeddings {
            vec![("lm_head.weight".into(), "transformer.word_embeddings.weight".into())]
        } else {
            Vec::new()
        }
    }
}
