//! The language-model wrapper of the decoder-only families: a stack, `lm_head`, loading with a
//! tied head, and the cached forward that generation drives.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedLinear, AdapterSites, Result, SiteMut};
use std::path::Path;

use super::{DecoderConfig, DecoderStack, load_transformer, new_lm_head, tie, tied_optional, tied_weights};
use crate::cache::KvCache;
use crate::generation::{CausalLm, greedy};
use crate::layers::causal_lm_loss;

/// A decoder-only language model: a [`DecoderStack`] under `lm_head`. Every implementation is a
/// [`CausalLm`] (what [`crate::generation::generate`] drives) through one blanket impl.
pub trait DecoderLm {
    /// The stack under the head.
    type Stack: DecoderStack;

    /// The stack.
    fn stack(&self) -> &Self::Stack;

    /// `hidden_size -> vocab_size`.
    fn lm_head(&self) -> &AdaptedLinear;

    /// Logits from input embeddings, after an already-seen prefix in `cache` if any (see
    /// [`DecoderStack::forward_embeds`]).
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, hidden_size]`
    /// - `attention_mask`: `[batch, len]`, the new tokens only (the cache keeps its own)
    /// - output: `[batch, len, vocab_size]`
    fn logits_from_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.lm_head().forward(self.stack().forward_embeds(embeds, attention_mask, cache))
    }

    /// Logits and transformers' causal LM loss ([`crate::layers::causal_lm_loss`]), positions
    /// `0..len` in every row.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`, `labels`: `[batch, len]`
    /// - outputs: `[batch, len, vocab_size]` and `[1]`
    fn logits_and_loss(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, labels: Tensor<2, Int>) -> (Tensor<3>, Tensor<1>) {
        let logits = self.logits_from_embeds(self.stack().embed(input_ids), attention_mask, None);
        (logits.clone(), causal_lm_loss(logits, labels))
    }
}

impl<M: DecoderLm> CausalLm for M {
    type Cache = KvCache;

    fn new_cache(&self) -> KvCache {
        KvCache::new(self.stack().num_layers())
    }

    fn forward_cached(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, cache: &mut KvCache) -> Tensor<3> {
        self.lm_head().forward(self.stack().forward_cached(input_ids, attention_mask, cache))
    }
}

/// transformers' `GPT2LMHeadModel` / `BloomForCausalLM`: the stack at `transformer.*` and
/// `lm_head`.
///
/// With `tie_word_embeddings`, `lm_head` is still its own layer holding a copy of the embedding
/// table (transposed) made at construction and load, as [`crate::llama::LlamaForCausalLM`] does.
#[derive(Module, Debug)]
pub struct DecoderForCausalLm<S: DecoderStack> {
    /// The stack, at paths `transformer.*`.
    pub transformer: S,
    /// `hidden_size -> vocab_size`, no bias.
    pub lm_head: AdaptedLinear,
    /// The config the model was built from.
    #[module(skip)]
    pub config: S::Config,
}

impl<S: DecoderStack> DecoderLm for DecoderForCausalLm<S> {
    type Stack = S;

    fn stack(&self) -> &S {
        &self.transformer
    }

    fn lm_head(&self) -> &AdaptedLinear {
        &self.lm_head
    }
}

impl<S: DecoderStack> DecoderForCausalLm<S> {
    /// A new model for a validated `config`, weights drawn from `N(0, initializer_range)`.
    pub fn new(config: &S::Config, device: &Device) -> Self {
        Self::build(config, true, device)
    }

    /// [`DecoderForCausalLm::new`], its head tied only with `tied` (loaders tie after loading).
    fn build(config: &S::Config, tied: bool, device: &Device) -> Self {
        let transformer = S::build(config, device);
        let lm_head = new_lm_head(config, &transformer, tied, device);
        DecoderForCausalLm { transformer, lm_head, config: config.clone() }
    }

    /// Loads a transformers folder: `config.json` and `model.safetensors` (or its sharded index).
    ///
    /// # Errors
    /// [`peft_core::Error::Io`] naming `config.json` or `model.safetensors` when missing, the
    /// config's errors (the family config's `from_file`), and the loader's
    /// ([`peft_core::Error::MissingTensor`], [`peft_core::Error::ShapeMismatch`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        Self::from_pretrained_with_config(dir, S::Config::read(dir)?, device)
    }

    /// Like `from_pretrained` with a config given in code (the folder's `config.json` is not
    /// read); the config is validated first.
    pub fn from_pretrained_with_config(dir: impl AsRef<Path>, config: S::Config, device: &Device) -> Result<Self> {
        config.check()?;
        let mut model = load_transformer(Self::build(&config, false, device), dir.as_ref(), tied_optional(&config))?;
        if config.tie_word_embeddings() {
            tie(&mut model.lm_head, model.transformer.embeddings());
        }
        Ok(model)
    }

    /// The config the model was built from.
    pub fn config(&self) -> &S::Config {
        &self.config
    }

    /// An empty key/value cache for this model.
    pub fn new_cache(&self) -> KvCache {
        CausalLm::new_cache(self)
    }

    /// Next-token logits, positions `0..len` in every row as transformers' forward has them.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]` (mask 1 for real tokens)
    /// - output: `[batch, len, vocab_size]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.logits_from_embeds(self.transformer.embed(input_ids), attention_mask, None)
    }

    /// Logits and transformers' causal LM loss ([`crate::layers::causal_lm_loss`]).
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`, `labels`: `[batch, len]`
    /// - outputs: `[batch, len, vocab_size]` and `[1]`
    pub fn forward_with_loss(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, labels: Tensor<2, Int>) -> (Tensor<3>, Tensor<1>) {
        self.logits_and_loss(input_ids, attention_mask, labels)
    }

    /// Logits from input embeddings (the stack's `embed`, with prompt vectors prepended, say),
    /// optionally after an already-seen prefix in `cache`, to which the new tokens are appended.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, hidden_size]`
    /// - `attention_mask`: `[batch, len]`, the new tokens only (the cache keeps its own)
    /// - output: `[batch, len, vocab_size]`
    pub fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.logits_from_embeds(embeds, attention_mask, cache)
    }

    /// Logits for `input_ids` following the tokens in `cache`, which they are appended to, with
    /// the positions transformers' `generate` gives ([`DecoderStack::forward_cached`]): a
    /// left-padded row computes what it would unpadded.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`, the new tokens only
    /// - output: `[batch, len, vocab_size]`
    pub fn forward_cached(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, cache: &mut KvCache) -> Tensor<3> {
        CausalLm::forward_cached(self, input_ids, attention_mask, cache)
    }

    /// Greedy decoding with the key/value cache ([`crate::generation::greedy`]): up to
    /// `max_new_tokens` new tokens per row, a row stopping after `eos_token_id`. Returns the new
    /// tokens only (eos included).
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`, unpadded (see `generate_greedy_masked`)
    pub fn generate_greedy(&self, input_ids: Tensor<2, Int>, max_new_tokens: usize, eos_token_id: Option<u32>) -> Vec<Vec<u32>> {
        greedy(self, input_ids, None, max_new_tokens, eos_token_id)
    }

    /// `generate_greedy` for a left-padded batch: `attention_mask` is 1 for real tokens; each
    /// row generates what it would alone.
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

impl<S: DecoderStack> AdapterSites for DecoderForCausalLm<S> {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.transformer.visit_sites_prefixed("transformer.", f);
        f("lm_head", SiteMut::Linear(&mut self.lm_head));
    }

    fn default_target_modules(&self) -> Vec<String> {
        S::default_targets()
    }

    fn model_type(&self) -> Option<String> {
        self.transformer.model_type()
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["lm_head".into()]
    }

    fn model_dims(&self) -> Option<peft_core::ModelDims> {
        self.transformer.prompt_dims()
    }

    /// `[("lm_head.weight", "transformer.<embeddings>.weight")]` with tied embeddings, else none.
    fn tied_weights(&self) -> Vec<(String, String)> {
        tied_weights::<S>(&self.config, "transformer.")
    }
}

#[cfg(test)]
mod tests {
    use crate::bloom::{BloomConfig, BloomForCausalLM, BloomForSequenceClassification};
    use crate::gpt2::Gpt2LMHeadModel;
    
    use peft_core::Error;

    /// A bad config fails loading with the field named, before any weight is read (the folder
    /// has none) and without a panic.
    #[test]
    fn loading_checks_the_config_first() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let field = |e: Error| match e {
            Error::InvalidConfig { field, .. } => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2", "n_embd": 32, "n_head": 0}"#).expect("written");
        assert_eq!(field(Gpt2LMHeadModel::from_pretrained(dir.path(), &device).expect_err("n_head 0")), "n_head");
        std::fs::write(dir.path().join("config.json"), r#"{"model_type": "bloom", "n_layer": 0}"#).expect("written");
        assert_eq!(field(BloomForSequenceClassification::from_pretrained(dir.path(), &device).expect_err("no layers")), "n_layer");
        let config = BloomConfig { hidden_size: 30, n_head: 4, ..BloomConfig::default() };
        assert_eq!(field(BloomForCausalLM::from_pretrained_with_config(dir.path(), config, &device).expect_err("30 / 4")), "n_head");
    }
}
