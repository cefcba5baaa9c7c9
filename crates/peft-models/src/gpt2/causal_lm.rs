//! `GPT2LMHeadModel`: the stack with its tied language-modelling head, loading and generation.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedLinear, AdapterSites, Result, SiteMut};
use std::path::Path;

use super::config::Gpt2Config;
use super::mask::{full_key_mask, real_positions};
use super::model::Gpt2Model;
use crate::cache::KvCache;
use crate::generation::{CausalLm, greedy};
use crate::layers::causal_lm_loss;

/// transformers' `GPT2LMHeadModel`.
///
/// With `tie_word_embeddings` (GPT-2's default), `lm_head` is still its own layer holding a copy
/// of `wte` (transposed) made at construction and load, as [`crate::llama::LlamaForCausalLM`] does.
#[derive(Module, Debug)]
pub struct Gpt2LMHeadModel {
    /// The stack, at paths `transformer.*`.
    pub transformer: Gpt2Model,
    /// `n_embd -> vocab_size`, no bias.
    pub lm_head: AdaptedLinear,
    /// The config the model was built from.
    #[module(skip)]
    pub config: Gpt2Config,
}

impl Gpt2LMHeadModel {
    /// A new model for a validated `config`, weights drawn from `N(0, initializer_range)`.
    pub fn new(config: &Gpt2Config, device: &Device) -> Self {
        let transformer = Gpt2Model::new(config, device);
        let mut lm_head = super::linear(config.n_embd, config.vocab_size, false, config.initializer_range, device);
        if config.tie_word_embeddings {
            lm_head = super::tie(lm_head, &transformer.wte);
        }
        Gpt2LMHeadModel { transformer, lm_head, config: config.clone() }
    }

    /// Loads a transformers folder: `config.json` and `model.safetensors` (or its sharded index).
    ///
    /// # Errors
    /// [`peft_core::Error::Io`] naming `config.json` or `model.safetensors` when missing, the
    /// config's errors ([`Gpt2Config::from_file`]), and the loader's
    /// ([`peft_core::Error::MissingTensor`], [`peft_core::Error::ShapeMismatch`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        Self::from_pretrained_with_config(dir, Gpt2Config::from_file(dir)?, device)
    }

    /// Like [`Gpt2LMHeadModel::from_pretrained`] with a config given in code (the folder's
    /// `config.json` is not read).
    pub fn from_pretrained_with_config(dir: impl AsRef<Path>, config: Gpt2Config, device: &Device) -> Result<Self> {
        config.validate()?;
        let optional = if config.tie_word_embeddings { vec!["lm_head.weight".to_string()] } else { Vec::new() };
        let mut model = super::load(Self::new(&config, device), dir.as_ref(), optional)?;
        if config.tie_word_embeddings {
            model.lm_head = super::tie(model.lm_head, &model.transformer.wte);
        }
        Ok(model)
    }

    /// The config the model was built from.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// An empty key/value cache for this model.
    pub fn new_cache(&self) -> KvCache {
        self.transformer.new_cache()
    }

    /// Next-token logits, positions `0..len` in every row as transformers' forward has them.
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

    /// Logits from input embeddings ([`Gpt2Model::embed`], with prompt vectors prepended, say),
    /// optionally after an already-seen prefix in `cache`: the new tokens take positions
    /// `cache.seen()..` and are appended to it.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, n_embd]`
    /// - `attention_mask`: `[batch, len]`, the new tokens only (the cache keeps its own)
    /// - output: `[batch, len, vocab_size]`
    pub fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.lm_head.forward(self.transformer.forward_embeds(embeds, attention_mask, cache))
    }

    /// Logits for `input_ids` following the tokens in `cache`, which they are appended to, with
    /// the positions transformers' `generate` gives: each token's index among the real
    /// (mask 1) tokens so far, so a left-padded row starts at position 0 like an unpadded one.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`, the new tokens only
    /// - output: `[batch, len, vocab_size]`
    pub fn forward_cached(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, cache: &mut KvCache) -> Tensor<3> {
        let [batch, len] = input_ids.dims();
        let seen = cache.seen();
        let full = full_key_mask(Some(cache), attention_mask.clone(), batch, len, &input_ids.device());
        let positions = full.map(|m| real_positions(m).narrow(1, seen, len));
        let hidden = self.transformer.forward_embeds_at(self.transformer.embed(input_ids), attention_mask, Some(cache), positions);
        self.lm_head.forward(hidden)
    }

    /// Greedy decoding with the key/value cache ([`crate::generation::greedy`]): up to
    /// `max_new_tokens` new tokens per row, a row stopping after `eos_token_id`. Returns the new
    /// tokens only (eos included).
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`, unpadded (see [`Gpt2LMHeadModel::generate_greedy_masked`])
    pub fn generate_greedy(&self, input_ids: Tensor<2, Int>, max_new_tokens: usize, eos_token_id: Option<u32>) -> Vec<Vec<u32>> {
        greedy(self, input_ids, None, max_new_tokens, eos_token_id)
    }

    /// [`Gpt2LMHeadModel::generate_greedy`] for a left-padded batch: `attention_mask` is 1 for real
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

impl CausalLm for Gpt2LMHeadModel {
    type Cache = KvCache;

    fn new_cache(&self) -> KvCache {
        Gpt2LMHeadModel::new_cache(self)
    }

    fn forward_cached(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, cache: &mut KvCache) -> Tensor<3> {
        Gpt2LMHeadModel::forward_cached(self, input_ids, attention_mask, cache)
    }
}

impl AdapterSites for Gpt2LMHeadModel {
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

    /// `[("lm_head.weight", "transformer.wte.weight")]` with tied embeddings, else none.
    fn tied_weights(&self) -> Vec<(String, String)> {
        if self.config.tie_word_embeddings {
            vec![("lm_head.weight".into(), "transformer.wte.weight".into())]
        } else {
            Vec::new()
        }
    }
}
