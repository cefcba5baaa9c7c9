//! `BertConfig`: transformers' `config.json` for BERT and RoBERTa.

use peft_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::layers::HiddenAct;

/// Which encoder family a config describes; they differ only in position ids and key prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// BERT: positions `0..seq`, weights under `bert.` in task checkpoints.
    #[default]
    Bert,
    /// RoBERTa: positions from `pad_token_id + 1`, padding keeps `pad_token_id`; prefix `roberta.`.
    Roberta,
}

impl ModelType {
    /// The prefix of the base model's keys in a task checkpoint (`bert`, `roberta`).
    pub fn prefix(self) -> &'static str {
        match self {
            ModelType::Bert => "bert",
            ModelType::Roberta => "roberta",
        }
    }
}

const MODEL_TYPES: &[&str] = &["bert", "roberta"];
const HIDDEN_ACTS: &[&str] = &["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"];

/// A BERT or RoBERTa configuration, read from transformers' `config.json`.
///
/// Missing keys take transformers' `BertConfig` defaults (bert-base); unknown keys are ignored,
/// as transformers writes many (`architectures`, `torch_dtype`, ...) that do not shape the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    /// `bert` or `roberta`.
    pub model_type: ModelType,
    /// Rows of the word embedding table.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Activation of the feed-forward block.
    pub hidden_act: HiddenAct,
    /// Dropout on embeddings and block outputs (training only).
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    pub attention_probs_dropout_prob: f64,
    /// Rows of the position embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the token type (segment) embedding table.
    pub type_vocab_size: usize,
    /// Standard deviation of the normal initialisation of new weights.
    pub initializer_range: f64,
    /// `eps` of every LayerNorm.
    pub layer_norm_eps: f64,
    /// The padding token id (RoBERTa's position ids are built around it).
    pub pad_token_id: usize,
    /// Only `absolute` is supported.
    pub position_embedding_type: String,
    /// Dropout before the classifier; `hidden_dropout_prob` when absent.
    pub classifier_dropout: Option<f64>,
    /// Labels of a classification head, by index as a string (`"0"`).
    pub id2label: Option<BTreeMap<String, String>>,
    /// Number of labels of a classification head: `id2label`'s length when present.
    pub num_labels: usize,
}

impl Default for BertConfig {
    fn default() -> Self {
        BertConfig {
            model_type: ModelType::Bert,
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: HiddenAct::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: "absolute".into(),
            classifier_dropout: None,
            id2label: None,
            num_labels: 2,
        }
    }
}

impl BertConfig {
    /// Reads `config.json` from a model folder (or the file itself).
    ///
    /// Fails with [`Error::Io`] when it cannot be read, [`Error::Json`] when it is malformed,
    /// [`Error::Unsupported`] for another `model_type`, `hidden_act` or `position_embedding_type`,
    /// and [`Error::InvalidConfig`] for sizes that cannot build a model.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let (text, path) = crate::config_file::read(path)?;
        Self::from_json(&text, &path)
    }

    /// Parses the text of a `config.json`; `path` only names the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let (mut config, labels): (BertConfig, _) = crate::config_file::parse(text, path, &[("model_type", MODEL_TYPES), ("hidden_act", HIDDEN_ACTS)])?;
        if let Some(n) = labels {
            config.num_labels = n;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that the sizes can build a model.
    pub fn validate(&self) -> Result<()> {
        crate::config_file::require_positive(&[("vocab_size", self.vocab_size), ("hidden_size", self.hidden_size), ("num_hidden_layers", self.num_hidden_layers), ("intermediate_size", self.intermediate_size), ("max_position_embeddings", self.max_position_embeddings), ("type_vocab_size", self.type_vocab_size)])?;
        if self.position_embedding_type != "absolute" {
            return Err(Error::Unsupported {
                what: format!("position_embedding_type `{}`", self.position_embedding_type),
                supported: "absolute".into(),
            });
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(
                "num_attention_heads",
                self.num_attention_heads,
                format!("use a divisor of hidden_size = {}", self.hidden_size),
            ));
        }
        if self.model_type == ModelType::Roberta && self.pad_token_id.saturating_add(1) >= self.max_position_embeddings {
            return Err(Error::config(
                "max_position_embeddings",
                self.max_position_embeddings,
                format!("RoBERTa positions start at pad_token_id + 1 = {}; use a larger table", self.pad_token_id.saturating_add(1)),
            ));
        }
        if self.model_type == ModelType::Bert && self.pad_token_id >= self.vocab_size.max(1) {
            return Err(Error::config("pad_token_id", self.pad_token_id, format!("use an id below vocab_size = {}", self.vocab_size)));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// The dropout before the classifier.
    pub fn classifier_dropout_prob(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_keys_and_labels_come_from_id2label() {
        let json = r#"{"model_type": "roberta", "hidden_size": 32, "num_attention_heads": 4,
                       "id2label": {"0": "a", "1": "b", "2": "c"}, "architectures": ["X"]}"#;
        let c = BertConfig::from_json(json, Path::new("config.json")).expect("parses");
        assert_eq!(c.model_type, ModelType::Roberta);
        assert_eq!(c.num_labels, 3);
        assert_eq!(c.head_dim(), 8);
        assert_eq!(c.intermediate_size, 3072);
    }

    #[test]
    fn unknown_names_are_unsupported() {
        for json in [r#"{"model_type": "gpt2"}"#, r#"{"hidden_act": "swish"}"#, r#"{"position_embedding_type": "relative_key"}"#] {
            let err = BertConfig::from_json(json, Path::new("config.json")).expect_err(json);
            assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        }
    }

    #[test]
    fn zero_and_indivisible_sizes_name_their_field() {
        use crate::config_file::invalid_field;
        let field = |json: &str| invalid_field(BertConfig::from_json(json, Path::new("config.json")).map(|_| ()));
        assert_eq!(field(r#"{"num_attention_heads": 0}"#), "num_attention_heads");
        assert_eq!(field(r#"{"hidden_size": 30, "num_attention_heads": 4}"#), "num_attention_heads");
        assert_eq!(field(r#"{"num_hidden_layers": 0}"#), "num_hidden_layers");
        assert_eq!(field(r#"{"vocab_size": 0}"#), "vocab_size");
        // The largest id overflowed `pad_token_id + 1` (a panic in debug builds).
        assert_eq!(field(r#"{"model_type": "roberta", "pad_token_id": 18446744073709551615}"#), "max_position_embeddings");
    }
}
