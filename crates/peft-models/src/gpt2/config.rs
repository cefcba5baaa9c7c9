//! `Gpt2Config`: transformers' `config.json` for GPT-2, read with serde.

use peft_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::layers::HiddenAct;
use crate::config_file::TokenIds;

/// The `model_type`s this module builds.
pub const SUPPORTED_MODEL_TYPES: [&str; 1] = ["gpt2"];

const ACTIVATIONS: &[&str] = &["gelu_new", "gelu_pytorch_tanh", "gelu", "relu"];

/// transformers' `GPT2Config`, as `config.json` holds it (`n_embd`, `n_layer`, ...; the generic
/// names `hidden_size`, `num_hidden_layers`, ... are read too).
///
/// Missing keys take transformers' defaults (gpt2-small); unknown keys are ignored. Call
/// [`Gpt2Config::validate`] (done by [`Gpt2Config::from_file`]) before building a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gpt2Config {
    /// `gpt2`.
    pub model_type: String,
    /// Rows of the token embedding table and columns of the logits.
    pub vocab_size: usize,
    /// Rows of the learned position table: the longest input.
    #[serde(alias = "max_position_embeddings")]
    pub n_positions: usize,
    /// Width of the residual stream.
    #[serde(alias = "hidden_size")]
    pub n_embd: usize,
    /// Number of blocks.
    #[serde(alias = "num_hidden_layers")]
    pub n_layer: usize,
    /// Attention heads per block; must divide `n_embd`.
    #[serde(alias = "num_attention_heads")]
    pub n_head: usize,
    /// Width of the MLP; `4 * n_embd` when absent.
    pub n_inner: Option<usize>,
    /// The MLP activation (`gelu_new`: tanh-approximated GELU).
    pub activation_function: HiddenAct,
    /// Dropout after the attention and MLP projections (training only).
    pub resid_pdrop: f64,
    /// Dropout on the summed embeddings (training only).
    pub embd_pdrop: f64,
    /// Dropout on the attention probabilities (training only).
    pub attn_pdrop: f64,
    /// The `eps` of every LayerNorm.
    pub layer_norm_epsilon: f64,
    /// Std of the normal initialisation of a model built from scratch.
    pub initializer_range: f64,
    /// Whether scores are divided by `sqrt(head_dim)`.
    pub scale_attn_weights: bool,
    /// Whether block `i`'s scores are further divided by `i + 1`.
    pub scale_attn_by_inverse_layer_idx: bool,
    /// transformers computes scores in f32 with this set; in f32 it changes nothing.
    pub reorder_and_upcast_attn: bool,
    /// Cross-attention blocks (GPT-2 as a decoder of an encoder-decoder): not supported.
    pub add_cross_attention: bool,
    /// Whether `lm_head` shares `wte` (then the file lacks `lm_head.weight`).
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s).
    pub eos_token_id: Option<TokenIds>,
    /// Padding token: sequence classification pools the last token that is not this one.
    pub pad_token_id: Option<u32>,
    /// Dropout before the token classifier; 0.1 when absent, as transformers' GPT-2 has it.
    pub classifier_dropout: Option<f64>,
    /// Labels of a classification head, by index as a string (`"0"`).
    pub id2label: Option<BTreeMap<String, String>>,
    /// Number of labels of a classification head: `id2label`'s length when present.
    pub num_labels: usize,
}

impl Default for Gpt2Config {
    fn default() -> Self {
        Gpt2Config {
            model_type: "gpt2".into(),
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            activation_function: HiddenAct::GeluTanh,
            resid_pdrop: 0.1,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
            layer_norm_epsilon: 1e-5,
            initializer_range: 0.02,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            reorder_and_upcast_attn: false,
            add_cross_attention: false,
            tie_word_embeddings: true,
            bos_token_id: Some(50256),
            eos_token_id: Some(TokenIds::One(50256)),
            pad_token_id: None,
            classifier_dropout: None,
            id2label: None,
            num_labels: 2,
        }
    }
}

impl Gpt2Config {
    /// Reads and validates `config.json` (a folder is read as its `config.json`).
    ///
    /// Fails with [`Error::Io`] naming the file when it cannot be read, [`Error::Json`] when it
    /// is malformed, [`Error::Unsupported`] for another `model_type` or `activation_function`,
    /// and as [`Gpt2Config::validate`] does.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let (text, path) = crate::config_file::read(path)?;
        Self::from_json(&text, &path)
    }

    /// Parses the text of a `config.json`; `path` only names the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let (mut config, labels): (Gpt2Config, _) = crate::config_file::parse(text, path, &[("activation_function", ACTIVATIONS)])?;
        if let Some(n) = labels {
            config.num_labels = n;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that a model can be built: `model_type` `gpt2`, no cross-attention, and a head
    /// count that divides the width.
    pub fn validate(&self) -> Result<()> {
        crate::config_file::require_positive(&[("vocab_size", self.vocab_size), ("n_embd", self.n_embd), ("n_layer", self.n_layer), ("n_positions", self.n_positions)])?;
        if !SUPPORTED_MODEL_TYPES.contains(&self.model_type.as_str()) {
            return Err(Error::Unsupported {
                what: format!("model_type `{}` as GPT-2", self.model_type),
                supported: SUPPORTED_MODEL_TYPES.join(", "),
            });
        }
        if self.add_cross_attention {
            return Err(Error::Unsupported { what: "GPT-2 with add_cross_attention".into(), supported: "decoder-only GPT-2".into() });
        }
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return Err(Error::config("n_head", self.n_head, format!("a non-zero divisor of n_embd = {}", self.n_embd)));
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
        self.n_embd / self.n_head.max(1)
    }

    /// Width of the MLP.
    pub fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(self.n_embd.saturating_mul(4))
    }

    /// The end-of-sequence ids, possibly none.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        TokenIds::all(self.eos_token_id.as_ref())
    }

    /// The dropout before the token classifier.
    pub fn classifier_dropout_prob(&self) -> f64 {
        self.classifier_dropout.unwrap_or(0.1)
    }
}

crate::causal::decoder_config!(Gpt2Config, hidden_size: n_embd, heads);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Gpt2Config> {
        Gpt2Config::from_json(json, Path::new("config.json"))
    }

    #[test]
    fn transformers_names_and_defaults() {
        let c = parse(r#"{"n_embd": 32, "n_head": 4, "n_layer": 2, "id2label": {"0": "a", "1": "b", "2": "c"}}"#).expect("parses");
        assert_eq!((c.head_dim(), c.inner_dim(), c.num_labels), (8, 128, 3));
        assert_eq!(c.activation_function, HiddenAct::GeluTanh);
        let generic = parse(r#"{"hidden_size": 16, "num_attention_heads": 2, "n_inner": 20}"#).expect("parses");
        assert_eq!((generic.n_embd, generic.n_head, generic.inner_dim()), (16, 2, 20));
    }

    #[test]
    fn unsupported_and_invalid() {
        for json in [r#"{"model_type": "llama"}"#, r#"{"activation_function": "swish"}"#, r#"{"add_cross_attention": true}"#] {
            assert!(matches!(parse(json), Err(Error::Unsupported { .. })), "{json}");
        }
        assert!(matches!(parse(r#"{"n_embd": 30, "n_head": 4}"#), Err(Error::InvalidConfig { .. })));
    }

    #[test]
    fn zero_and_indivisible_sizes_name_their_field() {
        use crate::config_file::invalid_field;
        let field = |json: &str| invalid_field(parse(json).map(|_| ()));
        assert_eq!(field(r#"{"n_head": 0}"#), "n_head");
        assert_eq!(field(r#"{"n_layer": 0}"#), "n_layer");
        assert_eq!(field(r#"{"vocab_size": 0}"#), "vocab_size");
        assert_eq!(field(r#"{"n_embd": 0}"#), "n_embd");
    }

    #[test]
    fn huge_widths_do_not_overflow() {
        let c = parse(r#"{"n_embd": 18446744073709551615, "n_head": 1}"#).expect("valid sizes, however large");
        assert_eq!(c.inner_dim(), usize::MAX);
    }
}
