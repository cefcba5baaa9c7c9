//! The task contracts models implement, so that methods and `PeftModel` can drive any of them
//! without depending on `peft-models`.
//!
//! One input type ([`ModelInputs`]) and one output type ([`TaskOutput`]) serve every task: causal
//! and seq2seq language modelling, sequence and token classification, question answering,
//! feature extraction and the image heads. A model reads the inputs its task needs and computes
//! the task's loss when labels are given. Prompt methods cooperate through two inputs a model
//! may accept: `inputs_embeds` (virtual tokens' vectors prepended to the token embeddings, with
//! [`TaskModel::embed_tokens`] to embed the real tokens) and `past_key_values` (an already-seen
//! prefix of keys and values in every layer).

use burn::tensor::{Int, Tensor, TensorData};

use crate::cache::KvCache;
use crate::generation::{GenerationConfig, Generated};
use crate::{AdapterSites, Error, InputLimits, Result, TaskType};

/// What a model reads; each task reads the fields it needs.
///
/// # Shapes
/// - `input_ids`, `attention_mask`: `[batch, len]`
/// - `inputs_embeds`: `[batch, len, hidden]` (instead of `input_ids`)
/// - `decoder_input_ids`: `[batch, target_len]` (encoder-decoders)
/// - `pixel_values`: `[batch, channels, height, width]` (image models)
/// - `input_features`: `[batch, mel_bins, frames]` (speech models)
#[derive(Clone, Debug, Default)]
pub struct ModelInputs {
    /// Token ids.
    pub input_ids: Option<Tensor<2, Int>>,
    /// 1 for real tokens, 0 for padding; covers `inputs_embeds` when those are given.
    pub attention_mask: Option<Tensor<2, Int>>,
    /// The segment of each token (BERT: 0 for the first text of a pair, 1 for the second), for
    /// models with a token type table; zeros when absent. Like the mask, it covers
    /// `inputs_embeds` when those are given.
    pub token_type_ids: Option<Tensor<2, Int>>,
    /// Input vectors instead of `input_ids` (prompt tuning's virtual tokens + the embedded ids).
    pub inputs_embeds: Option<Tensor<3>>,
    /// Keys and values the inputs follow (prefix tuning's virtual tokens).
    pub past_key_values: Option<KvCache>,
    /// The decoder's token ids (encoder-decoders).
    pub decoder_input_ids: Option<Tensor<2, Int>>,
    /// Images.
    pub pixel_values: Option<Tensor<4>>,
    /// Log-mel spectrogram frames.
    pub input_features: Option<Tensor<3>>,
    /// The targets; with them the model computes the task's loss.
    pub labels: Option<Labels>,
}

impl ModelInputs {
    /// Token ids alone.
    pub fn ids(input_ids: Tensor<2, Int>) -> Self {
        ModelInputs { input_ids: Some(input_ids), ..Default::default() }
    }

    /// Token ids with their padding mask.
    pub fn ids_with_mask(input_ids: Tensor<2, Int>, attention_mask: Tensor<2, Int>) -> Self {
        ModelInputs { input_ids: Some(input_ids), attention_mask: Some(attention_mask), ..Default::default() }
    }

    /// Adds token types (segment ids, for pairs of texts on BERT).
    pub fn with_token_type_ids(mut self, token_type_ids: Tensor<2, Int>) -> Self {
        self.token_type_ids = Some(token_type_ids);
        self
    }

    /// Adds labels.
    pub fn with_labels(mut self, labels: Labels) -> Self {
        self.labels = Some(labels);
        self
    }

    /// The token ids, or an error saying the model needs them.
    pub fn need_ids(&self) -> Result<Tensor<2, Int>> {
        self.input_ids.clone().ok_or_else(|| missing("input_ids", "token ids"))
    }

    /// The decoder ids, or an error saying the model needs them.
    pub fn need_decoder_ids(&self) -> Result<Tensor<2, Int>> {
        self.decoder_input_ids.clone().ok_or_else(|| missing("decoder_input_ids", "decoder token ids"))
    }

    /// The images, or an error saying the model needs them.
    pub fn need_pixels(&self) -> Result<Tensor<4>> {
        self.pixel_values.clone().ok_or_else(|| missing("pixel_values", "images"))
    }

    /// The audio features, or an error saying the model needs them.
    pub fn need_features(&self) -> Result<Tensor<3>> {
        self.input_features.clone().ok_or_else(|| missing("input_features", "audio features"))
    }

    /// The batch size, from whichever input is present.
    pub fn batch_size(&self) -> Option<usize> {
        let from_ids = self.input_ids.as_ref().map(|t| t.dims()[0]);
        let from_embeds = || self.inputs_embeds.as_ref().map(|t| t.dims()[0]);
        let from_pixels = || self.pixel_values.as_ref().map(|t| t.dims()[0]);
        let from_features = || self.input_features.as_ref().map(|t| t.dims()[0]);
        from_ids.or_else(from_embeds).or_else(from_pixels).or_else(from_features)
    }
}

fn missing(input: &str, what: &str) -> Error {
    Error::InvalidState(format!("this model needs `{input}` ({what}) in its inputs"))
}

/// A task's targets.
///
/// # Shapes
/// - `Sequence`: `[batch]` (class per row)
/// - `Tokens`: `[batch, len]` (next tokens for language models, classes per token; -100 is ignored)
/// - `Spans`: `[batch]` each (answer start and end token)
/// - `Pixels`: `[batch, height, width]` (class per pixel)
#[derive(Clone, Debug)]
pub enum Labels {
    /// One class per row (sequence or image classification).
    Sequence(Tensor<1, Int>),
    /// One id per token (language models, token classification).
    Tokens(Tensor<2, Int>),
    /// Answer spans (question answering).
    Spans {
        /// First token of the answer.
        start: Tensor<1, Int>,
        /// Last token of the answer.
        end: Tensor<1, Int>,
    },
    /// One class per pixel (semantic segmentation).
    Pixels(Tensor<3, Int>),
}

/// A head's output, whatever its rank.
#[derive(Clone, Debug)]
pub enum Logits {
    /// `[batch, classes]` (sequence or image classification).
    Rank2(Tensor<2>),
    /// `[batch, len, vocab | classes | hidden | 2]` (LM logits, token classes, features, QA start/end).
    Rank3(Tensor<3>),
    /// `[batch, classes | channels, height, width]` (semantic segmentation, SegFormer features).
    Rank4(Tensor<4>),
}

impl Logits {
    /// The values and shape, on the host.
    pub fn into_data(self) -> TensorData {
        match self {
            Logits::Rank2(t) => t.into_data(),
            Logits::Rank3(t) => t.into_data(),
            Logits::Rank4(t) => t.into_data(),
        }
    }

    /// The shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Logits::Rank2(t) => t.dims().to_vec(),
            Logits::Rank3(t) => t.dims().to_vec(),
            Logits::Rank4(t) => t.dims().to_vec(),
        }
    }

    /// The rank-3 logits (language models, token classification), or an error naming the rank.
    pub fn rank3(self) -> Result<Tensor<3>> {
        match self {
            Logits::Rank3(t) => Ok(t),
            other => Err(Error::InvalidState(format!("expected [batch, len, classes] logits, got shape {:?}", other.dims()))),
        }
    }

    /// The rank-2 logits (sequence classification), or an error naming the rank.
    pub fn rank2(self) -> Result<Tensor<2>> {
        match self {
            Logits::Rank2(t) => Ok(t),
            other => Err(Error::InvalidState(format!("expected [batch, classes] logits, got shape {:?}", other.dims()))),
        }
    }
}

/// What a task forward returns.
#[derive(Clone, Debug)]
pub struct TaskOutput {
    /// The head's output.
    pub logits: Logits,
    /// The task's loss, when labels were given: shape `[1]`.
    pub loss: Option<Tensor<1>>,
}

/// The sizes prompt methods take from a model (the Python library fills `token_dim`,
/// `num_layers`, `num_attention_heads` of prompt configs from the model's config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelDims {
    /// Width of the token embeddings (`hidden_size`, `d_model`).
    pub hidden_size: usize,
    /// Transformer layers (per stack for encoder-decoders).
    pub num_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention; equal to the heads otherwise).
    pub num_key_value_heads: usize,
    /// Width of one head's keys and values.
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// 2 for encoder-decoders (prompts for both stacks), 1 otherwise.
    pub num_transformer_submodules: usize,
}

/// A model that runs a task: the contract `PeftModel::forward` and the prompt methods use.
pub trait TaskModel: AdapterSites {
    /// The task the loaded head serves (`None` for a model used only for its features).
    fn task_type(&self) -> Option<TaskType>;

    /// The head's output on `inputs`, and the task's loss when `inputs.labels` is set.
    ///
    /// # Errors
    /// [`Error::InvalidState`] for a missing input; [`Error::Unsupported`] for an input this
    /// model cannot take (`inputs_embeds` or `past_key_values` where it has no such path).
    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput>;

    /// The model's own embedding of `input_ids` (what `inputs_embeds` replaces).
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`; output `[batch, len, hidden]`
    fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        let _ = input_ids;
        Err(Error::Unsupported { what: "input embeddings with this model".into(), supported: "models that implement TaskModel::embed_tokens".into() })
    }

    /// What inputs the model takes (vocabulary, position table, widths, image size), which
    /// `PeftModel` checks before every forward; no limits by default.
    fn input_limits(&self) -> InputLimits {
        InputLimits::default()
    }

    /// The sizes prompt methods need.
    fn dims(&self) -> Result<ModelDims> {
        Err(Error::Unsupported { what: "model sizes for prompt methods with this model".into(), supported: "models that implement TaskModel::dims".into() })
    }

    /// New tokens after `inputs` (causal LMs continue `input_ids`; seq2seq LMs encode them and
    /// decode). Only language models generate.
    fn generate(&self, inputs: ModelInputs, config: &GenerationConfig) -> Result<Generated> {
        let _ = (inputs, config);
        Err(Error::Unsupported {
            what: "generation with this head".into(),
            supported: "causal and seq2seq language models; load the model with its LM head".into(),
        })
    }
}
