//! `config.json` of T5 and mT5, read with serde.

use peft_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

use crate::config_file::TokenIds;

/// The `model_type`s this module builds (`MT5Config` has the same fields as `T5Config`).
pub const SUPPORTED_MODEL_TYPES: [&str; 2] = ["t5", "mt5"];

/// transformers' `T5Config` / `MT5Config`, as `config.json` holds it.
///
/// Missing fields take transformers' `T5Config` defaults. Unknown keys are ignored. Call
/// [`T5Config::validate`] (done by [`T5Config::from_file`]) before building a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct T5Config {
    /// Where the weights were loaded from (transformers' `_name_or_path`; set by `from_pretrained`).
    #[serde(rename = "_name_or_path", skip_serializing_if = "Option::is_none")]
    pub name_or_path: Option<String>,
    /// `t5` or `mt5`.
    pub model_type: String,
    /// Rows of the shared embedding table and columns of the logits.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    /// Width of the feed-forward hidden layer.
    pub d_ff: usize,
    /// Number of encoder blocks.
    pub num_layers: usize,
    /// Number of decoder blocks; `num_layers` when absent.
    pub num_decoder_layers: Option<usize>,
    /// Attention heads.
    pub num_heads: usize,
    /// Buckets of the relative position bias.
    pub relative_attention_num_buckets: usize,
    /// Distance from which every relative position shares the last bucket.
    pub relative_attention_max_distance: usize,
    /// Dropout probability (training only).
    pub dropout_rate: f64,
    /// The `eps` of every T5 LayerNorm.
    pub layer_norm_epsilon: f64,
    /// Scale of the initialisation of a model built from scratch.
    pub initializer_factor: f64,
    /// `relu`, `gelu`, `gated-gelu` (T5 v1.1, mT5: GELU tanh approximation), `gated-silu`, ...
    pub feed_forward_proj: String,
    /// T5: `false` (v1.1, Flan-T5) turns off the `d_model^-0.5` rescaling of the decoder output.
    pub tie_word_embeddings: Option<bool>,
    /// T5: whether the decoder output is multiplied by `d_model^-0.5` before `lm_head` (written by
    /// transformers 5; derived from `tie_word_embeddings` when absent).
    pub scale_decoder_outputs: Option<bool>,
    /// Padding token (also what `-100` labels become in the decoder input).
    pub pad_token_id: Option<u32>,
    /// End-of-sequence token(s).
    pub eos_token_id: Option<TokenIds>,
    /// The token every decoder sequence starts with; `pad_token_id` when absent.
    pub decoder_start_token_id: Option<u32>,
    /// Dropout of the classification heads (training only).
    pub classifier_dropout: f64,
    /// Class names by index (`{"0": "neg", "1": "pos"}`); their number is the heads' output width.
    pub id2label: Option<Map<String, Value>>,
}

impl Default for T5Config {
    fn default() -> Self {
        T5Config {
            name_or_path: None,
            model_type: "t5".into(),
            vocab_size: 32128,
            d_model: 512,
            d_kv: 64,
            d_ff: 2048,
            num_layers: 6,
            num_decoder_layers: None,
            num_heads: 8,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            dropout_rate: 0.1,
            layer_norm_epsilon: 1e-6,
            initializer_factor: 1.0,
            feed_forward_proj: "relu".into(),
            tie_word_embeddings: None,
            scale_decoder_outputs: None,
            pad_token_id: Some(0),
            eos_token_id: Some(TokenIds::One(1)),
            decoder_start_token_id: None,
            classifier_dropout: 0.0,
            id2label: None,
        }
    }
}

/// The feed-forward activation named by `feed_forward_proj`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfActivation {
    /// `max(x, 0)`.
    Relu,
    /// Exact GELU (`gelu`).
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, what `gated-gelu` means).
    GeluNew,
    /// `x * sigmoid(x)` (`silu`, `swish`).
    Silu,
}

impl T5Config {
    /// Reads and validates a `config.json`.
    ///
    /// Fails with [`Error::Io`] naming the file when it cannot be read, [`Error::Json`] when it
    /// is malformed, and as [`T5Config::validate`] does.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let (text, path) = crate::config_file::read(path)?;
        Self::from_json(&text, &path)
    }

    /// Parses and validates the text of a `config.json`; `path` only names the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let (config, _): (T5Config, _) = crate::config_file::parse(text, path, &[])?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that a model can be built: a supported `model_type` and `feed_forward_proj`,
    /// non-zero widths and a dropout probability in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        crate::config_file::require_positive(&[("num_layers", self.num_layers), ("num_decoder_layers", self.num_decoder_layers()), ("d_ff", self.d_ff)])?;
        if !SUPPORTED_MODEL_TYPES.contains(&self.model_type.as_str()) {
            return Err(Error::Unsupported {
                what: format!("model_type `{}` as T5", self.model_type),
                supported: SUPPORTED_MODEL_TYPES.join(", "),
            });
        }
        self.feed_forward()?;
        for (field, value) in [("d_model", self.d_model), ("d_kv", self.d_kv), ("num_heads", self.num_heads), ("vocab_size", self.vocab_size)] {
            if value == 0 {
                return Err(Error::config(field, value, "a positive number"));
            }
        }
        if self.relative_attention_num_buckets < 4 {
            let fix = "at least 4 (half the buckets are exact distances, per direction)";
            return Err(Error::config("relative_attention_num_buckets", self.relative_attention_num_buckets, fix));
        }
        for (field, p) in [("dropout_rate", self.dropout_rate), ("classifier_dropout", self.classifier_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::config(field, p, "a probability in [0, 1)"));
            }
        }
        Ok(())
    }

    /// `(gated, activation)` from `feed_forward_proj` (`gated-gelu` is `(true, GeluNew)`).
    ///
    /// Fails with [`Error::Unsupported`] for other activations or shapes of the string.
    pub fn feed_forward(&self) -> Result<(bool, FfActivation)> {
        let proj = self.feed_forward_proj.as_str();
        let parts: Vec<&str> = proj.split('-').collect();
        // transformers accepts `<act>` and `gated-<act>` only.
        let (gated, act) = match parts[..] {
            [act] => (false, act),
            ["gated", act] => (true, act),
            _ => (false, ""),
        };
        let activation = match act {
            "relu" => FfActivation::Relu,
            // transformers maps `gated-gelu` to `gelu_new` for backward compatibility.
            "gelu" if gated => FfActivation::GeluNew,
            "gelu" => FfActivation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => FfActivation::GeluNew,
            "silu" | "swish" => FfActivation::Silu,
            _ => {
                return Err(Error::Unsupported {
                    what: format!("feed_forward_proj `{proj}`"),
                    supported: "relu, gelu, gelu_new, silu, each optionally as gated-<act>".into(),
                });
            }
        };
        Ok((gated, activation))
    }

    /// Number of decoder blocks.
    pub fn num_decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    /// Whether the decoder output is multiplied by `d_model^-0.5` before `lm_head`: T5 v1.0 yes,
    /// T5 v1.1 / Flan-T5 (`tie_word_embeddings: false`) no; mT5 never (transformers 5).
    pub fn scales_decoder_output(&self) -> bool {
        self.model_type == "t5" && self.scale_decoder_outputs.unwrap_or(self.tie_word_embeddings != Some(false))
    }

    /// The decoder's first token (`decoder_start_token_id`, else `pad_token_id`, else 0).
    pub fn decoder_start(&self) -> u32 {
        self.decoder_start_token_id.or(self.pad_token_id).unwrap_or(0)
    }

    /// The end-of-sequence ids, possibly none.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        TokenIds::all(self.eos_token_id.as_ref())
    }

    /// Output width of the classification heads: the number of `id2label` entries, else 2.
    pub fn num_labels(&self) -> usize {
        self.id2label.as_ref().map_or(2, Map::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> T5Config {
        serde_json::from_str(json).expect("succeeds")
    }

    #[test]
    fn feed_forward_and_scaling() {
        assert_eq!(parse("{}").feed_forward().expect("relu"), (false, FfActivation::Relu));
        let v11 = parse(r#"{"feed_forward_proj": "gated-gelu", "tie_word_embeddings": false}"#);
        assert_eq!(v11.feed_forward().expect("gated"), (true, FfActivation::GeluNew));
        assert!(!v11.scales_decoder_output());
        assert!(parse("{}").scales_decoder_output());
        assert!(!parse(r#"{"tie_word_embeddings": true, "scale_decoder_outputs": false}"#).scales_decoder_output());
        assert!(!parse(r#"{"model_type": "mt5"}"#).scales_decoder_output());
        for bad in ["gated-tanh", "relu-gated", "gated-gelu-x"] {
            let config = parse(&format!(r#"{{"feed_forward_proj": "{bad}"}}"#));
            assert!(matches!(config.validate(), Err(Error::Unsupported { .. })), "{bad}");
        }
        assert!(matches!(parse(r#"{"dropout_rate": 1.0}"#).validate(), Err(Error::InvalidConfig { .. })));
        assert!(matches!(parse(r#"{"model_type": "bart"}"#).validate(), Err(Error::Unsupported { .. })));
        assert_eq!(parse(r#"{"pad_token_id": 3}"#).decoder_start(), 3);
    }

    #[test]
    fn zero_and_indivisible_sizes_name_their_field() {
        use crate::config_file::invalid_field;
        let field = |json: &str| invalid_field(parse(json).validate());
        assert_eq!(field(r#"{"num_heads": 0}"#), "num_heads");
        assert_eq!(field(r#"{"num_layers": 0}"#), "num_layers");
        assert_eq!(field(r#"{"num_decoder_layers": 0}"#), "num_decoder_layers");
        assert_eq!(field(r#"{"vocab_size": 0}"#), "vocab_size");
    }
}
