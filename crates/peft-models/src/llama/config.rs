//! `config.json` of the Llama family (`llama`, `mistral`, `qwen2`), read with serde.

use peft_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

use crate::config_file::TokenIds;
use crate::layers::RopeScaling;

/// The `model_type`s this module builds; they differ only in their config.
pub const SUPPORTED_MODEL_TYPES: [&str; 3] = ["llama", "mistral", "qwen2"];

/// transformers' `LlamaConfig` / `MistralConfig` / `Qwen2Config`, as `config.json` holds it.
///
/// Missing fields take transformers' `LlamaConfig` defaults. Unknown keys are ignored. Call
/// [`LlamaConfig::validate`] (done by [`LlamaConfig::from_file`]) before building a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlamaConfig {
    /// Where the weights were loaded from (transformers' `_name_or_path`; set by `from_pretrained`).
    #[serde(rename = "_name_or_path", skip_serializing_if = "Option::is_none")]
    pub name_or_path: Option<String>,
    /// `llama`, `mistral` or `qwen2`.
    pub model_type: String,
    /// Rows of the embedding table and columns of the logits.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); `num_attention_heads` when absent.
    pub num_key_value_heads: Option<usize>,
    /// Width of a head; `hidden_size / num_attention_heads` when absent.
    pub head_dim: Option<usize>,
    /// The MLP activation; only `silu` is supported.
    pub hidden_act: String,
    /// The longest context the model was trained for (informative: RoPE has no table limit here).
    pub max_position_embeddings: usize,
    /// The `eps` of every RMSNorm.
    pub rms_norm_eps: f64,
    /// Std of the normal initialisation of a model built from scratch.
    pub initializer_range: f64,
    /// Whether `lm_head` shares the embedding table (then the file may lack `lm_head.weight`).
    pub tie_word_embeddings: bool,
    /// Llama: bias on `q/k/v/o_proj`. Qwen2 always has q/k/v bias and no o_proj bias.
    pub attention_bias: bool,
    /// Llama: bias on `gate/up/down_proj`.
    pub mlp_bias: bool,
    /// Legacy RoPE base (transformers 4 wrote it at the top level).
    pub rope_theta: Option<f64>,
    /// Legacy RoPE scaling (`{"rope_type": "llama3", "factor": 8.0, ...}`, or `"type"`).
    pub rope_scaling: Option<Map<String, Value>>,
    /// RoPE base and scaling as transformers 5 writes them (`{"rope_theta": .., "rope_type": ..}`).
    pub rope_parameters: Option<Map<String, Value>>,
    /// Mistral / Qwen2 sliding-window attention width.
    pub sliding_window: Option<usize>,
    /// Qwen2: whether the sliding window is used at all.
    pub use_sliding_window: bool,
    /// Qwen2: layers below this index use full attention.
    pub max_window_layers: Option<usize>,
    /// Per-layer attention kind (`full_attention`, `sliding_attention`), when written.
    pub layer_types: Option<Vec<String>>,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s): a number or a list.
    pub eos_token_id: Option<TokenIds>,
    /// Padding token.
    pub pad_token_id: Option<u32>,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        LlamaConfig {
            name_or_path: None,
            model_type: "llama".into(),
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            head_dim: None,
            hidden_act: "silu".into(),
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            initializer_range: 0.02,
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
            rope_theta: None,
            rope_scaling: None,
            rope_parameters: None,
            sliding_window: None,
            use_sliding_window: false,
            max_window_layers: None,
            layer_types: None,
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
        }
    }
}

impl LlamaConfig {
    /// Reads and validates a `config.json`.
    ///
    /// Fails with [`Error::Io`] naming the file when it cannot be read, [`Error::Json`] when it
    /// is malformed, and as [`LlamaConfig::validate`] does.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let (text, path) = crate::config_file::read(path)?;
        Self::from_json(&text, &path)
    }

    /// Parses and validates the text of a `config.json`; `path` only names the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let (config, _): (LlamaConfig, _) = crate::config_file::parse(text, path, &[])?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that a model can be built: a supported `model_type`, `hidden_act` and RoPE type,
    /// and head counts that divide.
    pub fn validate(&self) -> Result<()> {
        crate::config_file::require_positive(&[("vocab_size", self.vocab_size), ("hidden_size", self.hidden_size), ("intermediate_size", self.intermediate_size), ("num_hidden_layers", self.num_hidden_layers)])?;
        if !SUPPORTED_MODEL_TYPES.contains(&self.model_type.as_str()) {
            return Err(Error::Unsupported {
                what: format!("model_type `{}` in the Llama family", self.model_type),
                supported: SUPPORTED_MODEL_TYPES.join(", "),
            });
        }
        if !matches!(self.hidden_act.as_str(), "silu" | "swish") {
            return Err(Error::Unsupported { what: format!("hidden_act `{}`", self.hidden_act), supported: "silu".into() });
        }
        let heads = self.num_attention_heads;
        if heads == 0 || (self.head_dim.is_none() && !self.hidden_size.is_multiple_of(heads)) {
            return Err(Error::config("num_attention_heads", heads, "a non-zero divisor of hidden_size"));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(Error::config("head_dim", self.head_dim(), "an even width (RoPE rotates pairs)"));
        }
        let kv = self.num_key_value_heads();
        if kv == 0 || !heads.is_multiple_of(kv) {
            return Err(Error::config("num_key_value_heads", kv, format!("a non-zero divisor of num_attention_heads ({heads})")));
        }
        self.rope()?;
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Number of key/value heads.
    pub fn num_key_value_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Whether `q/k/v_proj` have a bias (always for Qwen2).
    pub fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }

    /// Whether `o_proj` has a bias (Llama's `attention_bias`; never for Qwen2 or Mistral).
    pub fn o_bias(&self) -> bool {
        self.model_type == "llama" && self.attention_bias
    }

    /// Whether the MLP projections have a bias.
    pub fn mlp_bias(&self) -> bool {
        self.model_type == "llama" && self.mlp_bias
    }

    /// The end-of-sequence ids, possibly none.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        TokenIds::all(self.eos_token_id.as_ref())
    }

    /// The sliding-window width of layer `layer`, or `None` for full attention.
    pub fn sliding_window_for_layer(&self, layer: usize) -> Option<usize> {
        let window = self.sliding_window?;
        if let Some(types) = &self.layer_types {
            return (types.get(layer).map(String::as_str) == Some("sliding_attention")).then_some(window);
        }
        match self.model_type.as_str() {
            "mistral" => Some(window),
            "qwen2" => (self.use_sliding_window && layer >= self.max_window_layers.unwrap_or(0)).then_some(window),
            _ => None,
        }
    }

    /// RoPE's base `theta` and scaling, from `rope_parameters` (transformers 5) or the legacy
    /// `rope_theta` + `rope_scaling` (transformers 4).
    ///
    /// Fails with [`Error::Unsupported`] for a `rope_type` other than `default`, `linear` and
    /// `llama3`, and with [`Error::InvalidConfig`] when a scaling lacks one of its numbers.
    pub fn rope(&self) -> Result<(f64, RopeScaling)> {
        let params = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        let number = |key: &str| params.and_then(|p| p.get(key)).and_then(Value::as_f64);
        let theta = number("rope_theta").or(self.rope_theta).unwrap_or(10000.0);
        let kind = params
            .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let need = |key: &'static str| {
            number(key).ok_or_else(|| Error::config("rope_parameters", kind, format!("a `{key}` number for rope_type `{kind}`")))
        };
        let scaling = match kind {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: need("factor")? },
            "llama3" => RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_position_embeddings: need("original_max_position_embeddings")?,
            },
            other => {
                return Err(Error::Unsupported { what: format!("rope_type `{other}`"), supported: "default, linear, llama3".into() });
            }
        };
        Ok((theta, scaling))
    }
}

crate::causal::decoder_config!(LlamaConfig, hidden_size: hidden_size);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> LlamaConfig {
        serde_json::from_str(json).expect("succeeds")
    }

    #[test]
    fn both_rope_spellings() {
        let new = parse(r#"{"rope_parameters": {"rope_theta": 500000.0, "rope_type": "linear", "factor": 2.0}}"#);
        assert_eq!(new.rope().expect("succeeds"), (500000.0, RopeScaling::Linear { factor: 2.0 }));
        let old = parse(r#"{"rope_theta": 1e6, "rope_scaling": {"type": "linear", "factor": 4.0}}"#);
        assert_eq!(old.rope().expect("succeeds"), (1e6, RopeScaling::Linear { factor: 4.0 }));
        assert_eq!(parse("{}").rope().expect("succeeds"), (10000.0, RopeScaling::Default));
        let yarn = parse(r#"{"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}"#);
        assert!(matches!(yarn.rope(), Err(Error::Unsupported { .. })));
        assert!(matches!(yarn.validate(), Err(Error::Unsupported { .. })));
        let incomplete = parse(r#"{"rope_scaling": {"rope_type": "llama3", "factor": 4.0}}"#);
        assert!(matches!(incomplete.rope(), Err(Error::InvalidConfig { .. })));
    }

    #[test]
    fn family_differences() {
        let qwen = parse(r#"{"model_type": "qwen2", "hidden_size": 32, "num_attention_heads": 4, "eos_token_id": [5, 6]}"#);
        assert!(qwen.qkv_bias() && !qwen.o_bias());
        assert_eq!((qwen.head_dim(), qwen.num_key_value_heads()), (8, 4));
        assert_eq!(qwen.eos_token_ids(), vec![5, 6]);
        let mistral = parse(r#"{"model_type": "mistral", "sliding_window": 4096}"#);
        assert_eq!(mistral.sliding_window_for_layer(3), Some(4096));
        assert!(matches!(parse(r#"{"model_type": "gpt2"}"#).validate(), Err(Error::Unsupported { .. })));
        assert!(matches!(parse(r#"{"num_key_value_heads": 5}"#).validate(), Err(Error::InvalidConfig { .. })));
    }

    #[test]
    fn zero_and_indivisible_sizes_name_their_field() {
        use crate::config_file::invalid_field;
        let field = |json: &str| invalid_field(parse(json).validate());
        assert_eq!(field(r#"{"num_attention_heads": 0}"#), "num_attention_heads");
        assert_eq!(field(r#"{"hidden_size": 30, "num_attention_heads": 4}"#), "num_attention_heads");
        assert_eq!(field(r#"{"num_key_value_heads": 0}"#), "num_key_value_heads");
        assert_eq!(field(r#"{"num_attention_heads": 32, "num_key_value_heads": 5}"#), "num_key_value_heads");
        assert_eq!(field(r#"{"num_hidden_layers": 0}"#), "num_hidden_layers");
        assert_eq!(field(r#"{"vocab_size": 0}"#), "vocab_size");
    }
}
