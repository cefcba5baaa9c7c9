//! `BloomConfig`: transformers' `config.json` for BLOOM, read with serde.

use peft_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::config_file::TokenIds;

/// The `model_type`s this module builds.
pub const SUPPORTED_MODEL_TYPES: [&str; 1] = ["bloom"];

/// transformers' `BloomConfig`, as `config.json` holds it (`n_layer`, `n_head`; `n_embed` is read
/// as `hidden_size`, and the generic `num_hidden_layers` / `num_attention_heads` too).
///
/// Missing keys take transformers' defaults; unknown keys are ignored. Call
/// [`BloomConfig::validate`] (done by [`BloomConfig::from_file`]) before building a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BloomConfig {
    /// `bloom`.
    pub model_type: String,
    /// Rows of the embedding table and columns of the logits.
    pub vocab_size: usize,
    /// Width of the residual stream (the MLP is `4 * hidden_size` wide).
    #[serde(alias = "n_embed")]
    pub hidden_size: usize,
    /// Number of blocks.
    #[serde(alias = "num_hidden_layers")]
    pub n_layer: usize,
    /// Attention heads per block; must divide `hidden_size`.
    #[serde(alias = "num_attention_heads")]
    pub n_head: usize,
    /// The `eps` of every LayerNorm.
    pub layer_norm_epsilon: f64,
    /// Std of the normal initialisation of a model built from scratch.
    pub initializer_range: f64,
    /// Whether the residual around attention and MLP is the normed input instead of the input.
    pub apply_residual_connection_post_layernorm: bool,
    /// Dropout after the attention and MLP projections (training only).
    pub hidden_dropout: f64,
    /// Dropout on the attention probabilities (training only).
    pub attention_dropout: f64,
    /// Megatron's tensor-parallel degree; with `slow_but_exact` transformers sums the output
    /// projections in slices, which only changes rounding: both are computed in one product here.
    pub pretraining_tp: usize,
    /// See `pretraining_tp`.
    pub slow_but_exact: bool,
    /// Whether `lm_head` shares `word_embeddings` (then the file lacks `lm_head.weight`).
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s).
    pub eos_token_id: Option<TokenIds>,
    /// Padding token: sequence classification pools the last token that is not this one.
    pub pad_token_id: Option<u32>,
    /// Dropout before the token classifier; `hidden_dropout` when absent.
    pub classifier_dropout: Option<f64>,
    /// Labels of a classification head, by index as a string (`"0"`).
    pub id2label: Option<BTreeMap<String, String>>,
    /// Number of labels of a classification head: `id2label`'s length when present.
    pub num_labels: usize,
}

impl Default for BloomConfig {
    fn default() -> Self {
        BloomConfig {
            model_type: "bloom".into(),
            vocab_size: 250880,
            hidden_size: 64,
            n_layer: 2,
            n_head: 8,
            layer_norm_epsilon: 1e-5,
            initializer_range: 0.02,
            apply_residual_connection_post_layernorm: false,
            hidden_dropout: 0.0,
            attention_dropout: 0.0,
            pretraining_tp: 1,
            slow_but_exact: false,
            tie_word_embeddings: true,
            bos_token_id: Some(1),
            eos_token_id: Some(TokenIds::One(2)),
            pad_token_id: None,
            classifier_dropout: None,
            id2label: None,
            num_labels: 2,
        }
    }
}

impl BloomConfig {
    /// Reads and validates `config.json` (a folder is read as its `config.json`).
    ///
    /// Fails with [`Error::Io`] naming the file when it cannot be read, [`Error::Json`] when it
    /// is malformed, and as [`BloomConfig::validate`] does.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let (text, path) = crate::config_file::read(path)?;
        Self::from_json(&text, &path)
    }

    /// Parses and validates the text of a `config.json`; `path` only names the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let (mut config, labels): (BloomConfig, _) = crate::config_file::parse(text, path, &[])?;
        if let Some(n) = labels {
            config.num_labels = n;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that a model can be built: `model_type` `bloom` and a head count that divides the width.
    pub fn validate(&self) -> Result<()> {
        crate::config_file::require_positive(&[("vocab_size", self.vocab_size), ("hidden_size", self.hidden_size), ("n_layer", self.n_layer)])?;
        if !SUPPORTED_MODEL_TYPES.contains(&self.model_type.as_str()) {
            return Err(Error::Unsupported {
                what: format!("model_type `{}` as BLOOM", self.model_type),
                supported: SUPPORTED_MODEL_TYPES.join(", "),
            });
        }
        if self.n_head == 0 || !self.hidden_size.is_multiple_of(self.n_head) {
            return Err(Error::config("n_head", self.n_head, format!("a non-zero divisor of hidden_size = {}", self.hidden_size)));
        }
        if let Some(pad) = self.pad_token_id
            && pad as usize >= self.vocab_size
        {
            return Err(Error::config("pad_token_id", pad, format!("an id below vocab_size = {}", self.vocab_size)));
        }
        Ok(())
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.n_head.max(1)
    }

    /// The end-of-sequence ids, possibly none.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        TokenIds::all(self.eos_token_id.as_ref())
    }

    /// The dropout before the token classifier.
    pub fn classifier_dropout_prob(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout)
    }
}

crate::causal::decoder_config!(BloomConfig, hidden_size: hidden_size, heads);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_defaults_and_errors() {
        let c: BloomConfig = serde_json::from_str(r#"{"n_embed": 32, "num_attention_heads": 4, "n_layer": 3}"#).expect("parses");
        assert_eq!((c.hidden_size, c.n_head, c.head_dim(), c.eos_token_ids()), (32, 4, 8, vec![2]));
        c.validate().expect("valid");
        let gpt2: BloomConfig = serde_json::from_str(r#"{"model_type": "gpt2"}"#).expect("parses");
        assert!(matches!(gpt2.validate(), Err(Error::Unsupported { .. })));
        let odd: BloomConfig = serde_json::from_str(r#"{"hidden_size": 30, "n_head": 4}"#).expect("parses");
        assert!(matches!(odd.validate(), Err(Error::InvalidConfig { .. })));
    }

    #[test]
    fn zero_and_indivisible_sizes_name_their_field() {
        use crate::config_file::invalid_field;
        let field = |json: &str| invalid_field(serde_json::from_str::<BloomConfig>(json).expect("parses").validate());
        assert_eq!(field(r#"{"n_head": 0}"#), "n_head");
        assert_eq!(field(r#"{"n_layer": 0}"#), "n_layer");
        assert_eq!(field(r#"{"vocab_size": 0}"#), "vocab_size");
    }
}
