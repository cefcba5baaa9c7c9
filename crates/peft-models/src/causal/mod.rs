//! What the decoder-only families (Llama, GPT-2, BLOOM) share above their stacks, written once
//! over [`DecoderStack`]: the task heads ([`DecoderForSequenceClassification`],
//! [`DecoderForTokenClassification`], [`DecoderForQuestionAnswering`]), the language-model wrapper
//! [`DecoderForCausalLm`], and [`DecoderLm`], which gives every wrapper (Llama's too) the
//! [`crate::generation::CausalLm`] contract.
//!
//! A family implements [`DecoderStack`] for its bare model and [`DecoderConfig`] (and, for the
//! heads, [`HeadConfig`]) for its config, then names the instances:
//! `pub type Gpt2ForSequenceClassification = DecoderForSequenceClassification<Gpt2Model>`.

mod heads;
mod lm;

pub use heads::{DecoderForQuestionAnswering, DecoderForSequenceClassification, DecoderForTokenClassification};
pub use lm::{DecoderForCausalLm, DecoderLm};

use burn::module::{Module, ModuleDisplay, Param};
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedEmbedding, AdaptedLinear, AdapterSites, ModelDims, ModelInputs, Result, SiteMut};
use peft_io::weights::{LoadOptions, load_from_dir};
use std::fmt::Debug;
use std::path::Path;

use crate::cache::KvCache;

/// The config fields the language-model wrapper reads, under generic names (GPT-2 calls the
/// width `n_embd`, the others `hidden_size`).
pub trait DecoderConfig: Clone + Debug + Send + Sync + 'static {
    /// Reads and validates `config.json` (a folder is read as its `config.json`).
    ///
    /// # Errors
    /// The family's `from_file` errors: [`peft_core::Error::Io`], [`peft_core::Error::Json`],
    /// [`peft_core::Error::Unsupported`], [`peft_core::Error::InvalidConfig`].
    fn read(path: &Path) -> Result<Self>;
    /// Checks that a model can be built from this config (the family's `validate`).
    ///
    /// # Errors
    /// [`peft_core::Error::InvalidConfig`] naming the field, or [`peft_core::Error::Unsupported`].
    fn check(&self) -> Result<()>;
    /// Width of the residual stream.
    fn hidden_size(&self) -> usize;
    /// Rows of the token embedding table and columns of the logits.
    fn vocab_size(&self) -> usize;
    /// Std of the normal initialisation of fresh weights.
    fn initializer_range(&self) -> f64;
    /// Whether `lm_head` holds a copy of the token embeddings.
    fn tie_word_embeddings(&self) -> bool;
}

/// The config fields the task heads read.
pub trait HeadConfig: DecoderConfig {
    /// Outputs of a classification head.
    fn num_labels(&self) -> usize;
    /// Sets the outputs of a classification head (a head of another size than the folder's).
    fn set_num_labels(&mut self, num_labels: usize);
    /// The id sequence classification pools before (the last token that is not this one).
    fn pad_token_id(&self) -> Option<u32>;
    /// Dropout before the token classifier.
    fn classifier_dropout(&self) -> f64;
}

/// Implements [`DecoderConfig`] (and with `heads`, [`HeadConfig`]) for a family config whose
/// fields carry transformers' names, `$hidden` being its width (`n_embd` for GPT-2), and whose
/// `from_file` / `validate` / `classifier_dropout_prob` read, check and pick the dropout.
macro_rules! decoder_config {
    ($config:ty, hidden_size: $hidden:ident) => {
        impl $crate::causal::DecoderConfig for $config {
            fn read(path: &std::path::Path) -> peft_core::Result<Self> {
                <$config>::from_file(path)
            }

            fn check(&self) -> peft_core::Result<()> {
                self.validate()
            }

            fn hidden_size(&self) -> usize {
                self.$hidden
            }

            fn vocab_size(&self) -> usize {
                self.vocab_size
            }

            fn initializer_range(&self) -> f64 {
                self.initializer_range
            }

            fn tie_word_embeddings(&self) -> bool {
                self.tie_word_embeddings
            }
        }
    };
    ($config:ty, hidden_size: $hidden:ident, heads) => {
        $crate::causal::decoder_config!($config, hidden_size: $hidden);

        impl $crate::causal::HeadConfig for $config {
            fn num_labels(&self) -> usize {
                self.num_labels
            }

            fn set_num_labels(&mut self, num_labels: usize) {
                self.num_labels = num_labels;
            }

            fn pad_token_id(&self) -> Option<u32> {
                self.pad_token_id
            }

            fn classifier_dropout(&self) -> f64 {
                self.classifier_dropout_prob()
            }
        }
    };
}
pub(crate) use decoder_config;

/// A decoder-only stack (embeddings to final norm, no head) that runs on token embeddings and a
/// key/value cache.
pub trait DecoderStack: Module + ModuleDisplay + Debug + Sized {
    /// The family's config.
    type Config: DecoderConfig;
    /// The token embedding table's module path within the stack (`wte`, `embed_tokens`).
    const EMBEDDINGS: &'static str;

    /// A new stack for a validated `config`, weights drawn from `N(0, initializer_range)`.
    fn build(config: &Self::Config, device: &Device) -> Self;

    /// The token embedding table, which a tied `lm_head` copies.
    fn embeddings(&self) -> &AdaptedEmbedding;

    /// Number of layers, that is of cache slots.
    fn num_layers(&self) -> usize;

    /// Token embeddings (with any embedding adapter).
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`
    /// - output: `[batch, len, hidden_size]`
    fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3>;

    /// The final hidden states of token embeddings, after the tokens in `cache` (if any), to
    /// which they are appended; positions `0..len` in every row without a cache.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, hidden_size]`
    /// - `attention_mask`: `[batch, len]`, 1 for real tokens, the new tokens only
    /// - output: `[batch, len, hidden_size]`
    fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: Option<&mut KvCache>) -> Tensor<3>;

    /// The hidden states of `input_ids` after the tokens in `cache`, with the positions
    /// transformers' `generate` gives them; by default [`DecoderStack::forward_embeds`] with the cache.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`, the new tokens only
    /// - output: `[batch, len, hidden_size]`
    fn forward_cached(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, cache: &mut KvCache) -> Tensor<3> {
        self.forward_embeds_cached(self.embed(input_ids), attention_mask, cache)
    }

    /// [`DecoderStack::forward_cached`] on embeddings (a prompt method's prefill: virtual
    /// tokens' vectors in front of the prompt's): the positions transformers' `generate` gives;
    /// by default [`DecoderStack::forward_embeds`] with the cache.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, hidden_size]`
    /// - `attention_mask`: `[batch, len]`, the new tokens only
    /// - output: `[batch, len, hidden_size]`
    fn forward_embeds_cached(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, cache: &mut KvCache) -> Tensor<3> {
        self.forward_embeds(embeds, attention_mask, Some(cache))
    }

    /// Rows of the absolute position table, `None` for families without one (ALiBi, rotary).
    fn max_positions(&self) -> Option<usize> {
        None
    }

    /// The sizes prompt methods take from the model ([`peft_core::TaskModel::dims`]); `None`
    /// where the family does not give them.
    fn prompt_dims(&self) -> Option<ModelDims> {
        None
    }

    /// Lists the stack's adapter sites under `prefix` (`""`, `"transformer."`, `"model."`).
    fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>));

    /// The Python library's default LoRA targets for the family.
    fn default_targets() -> Vec<String>;

    /// transformers' `model_type` of the family (`AdapterSites::model_type`); `None` by default.
    fn model_type(&self) -> Option<String> {
        None
    }
}

/// What a decoder runs on: `inputs_embeds` when a prompt method prepared them (virtual tokens
/// in front), else the embedded `input_ids`.
///
/// # Errors
/// [`peft_core::Error::InvalidState`] when neither is given.
///
/// # Shapes
/// - output: `[batch, len, hidden_size]`
pub(crate) fn input_embeds<S: DecoderStack>(stack: &S, inputs: &ModelInputs) -> Result<Tensor<3>> {
    match &inputs.inputs_embeds {
        Some(embeds) => Ok(embeds.clone()),
        None => Ok(stack.embed(inputs.need_ids()?)),
    }
}

/// Loads a model whose stack sits at `transformer.` (GPT-2 and BLOOM task models): keys may
/// carry that prefix or not (a bare checkpoint); `optional` keys may be absent (a tied
/// `lm_head`, a new head).
pub(crate) fn load_transformer<M: AdapterSites>(model: M, dir: &Path, optional: Vec<String>) -> Result<M> {
    load_from_dir(model, dir, &LoadOptions { prefixes: vec!["transformer.".into()], optional })
}

/// The weight and bias keys of `heads` (for a new head that the file may lack).
pub(crate) fn head_keys(heads: &[String]) -> Vec<String> {
    heads.iter().flat_map(|p| [format!("{p}.weight"), format!("{p}.bias")]).collect()
}

/// A fresh `lm_head` (`hidden_size -> vocab_size`, no bias), tied to `stack`'s embeddings when
/// the config says so and `tied`. Loaders pass `tied = false` and tie after loading: tying reads
/// the table, which would draw a random one only for the loader to replace it.
pub(crate) fn new_lm_head<S: DecoderStack>(config: &S::Config, stack: &S, tied: bool, device: &Device) -> AdaptedLinear {
    let mut lm_head = crate::layers::linear(config.hidden_size(), config.vocab_size(), false, config.initializer_range(), device);
    if tied && config.tie_word_embeddings() {
        tie(&mut lm_head, stack.embeddings());
    }
    lm_head
}

/// The keys a tied `lm_head` may lack in a checkpoint.
pub(crate) fn tied_optional(config: &impl DecoderConfig) -> Vec<String> {
    if config.tie_word_embeddings() { vec!["lm_head.weight".to_string()] } else { Vec::new() }
}

/// Sets `lm_head`'s weight to the embedding table seen as Burn's linear layout (a transposed view
/// of the same storage: no copy), keeping its own id and `require_grad`. Tensors are values, so
/// the two stay separate parameters: adapters can target either, and an update of one (a full
/// fine-tune, a merge, a cast) makes a new tensor and leaves the other as it was.
pub(crate) fn tie(lm_head: &mut AdaptedLinear, table: &AdaptedEmbedding) {
    let weight = lm_head.base_layer.weight.clone();
    // Embedding `[vocab, hidden]` is Burn linear `[hidden, vocab]`. Transposed off the autodiff
    // graph, so that the view enters it as a leaf of its own (autodiff cannot track a view made
    // by a recorded transpose).
    let table = table.base_layer.weight.val();
    let view = if table.is_autodiff() { Tensor::from_inner(table.inner().transpose()) } else { table.transpose() };
    let id = weight.id;
    lm_head.base_layer.weight = Param::transform_for_load(weight, view, id);
}

/// `[("lm_head.weight", "{prefix}{embeddings}.weight")]` when tied, else none: the head holds a
/// copy of the table, which parameter counts count once.
pub(crate) fn tied_weights<S: DecoderStack>(config: &S::Config, prefix: &str) -> Vec<(String, String)> {
    if config.tie_word_embeddings() { vec![("lm_head.weight".into(), format!("{prefix}{}.weight", S::EMBEDDINGS))] } else { Vec::new() }
}
