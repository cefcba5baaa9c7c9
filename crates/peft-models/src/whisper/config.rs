//! `config.json` of Whisper, read with serde.

use peft_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::config_file::TokenIds;

/// The `model_type`s this module builds.
pub const SUPPORTED_MODEL_TYPES: [&str; 1] = ["whisper"];

/// Every LayerNorm of Whisper uses PyTorch's default `eps`.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// transformers' `WhisperConfig`, as `config.json` holds it.
///
/// Missing fields take transformers' defaults (those of `openai/whisper-tiny`'s shape family).
/// Unknown keys (dropouts, SpecAugment, generation extras) are ignored: they do not change the
/// forward in evaluation. Call [`WhisperConfig::validate`] (done by [`WhisperConfig::from_file`])
/// before building a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WhisperConfig {
    /// `whisper`.
    pub model_type: String,
    /// Rows of the token embedding table and columns of the logits.
    pub vocab_size: usize,
    /// Channels of the log-mel input features.
    pub num_mel_bins: usize,
    /// Width of the residual stream of encoder and decoder.
    pub d_model: usize,
    /// Number of encoder layers.
    pub encoder_layers: usize,
    /// Number of decoder layers.
    pub decoder_layers: usize,
    /// Heads of the encoder's self-attention.
    pub encoder_attention_heads: usize,
    /// Heads of the decoder's self- and cross-attention.
    pub decoder_attention_heads: usize,
    /// Width of the encoder MLP's hidden layer.
    pub encoder_ffn_dim: usize,
    /// Width of the decoder MLP's hidden layer.
    pub decoder_ffn_dim: usize,
    /// Encoder positions: the input has `2 * max_source_positions` frames (conv2 halves them).
    pub max_source_positions: usize,
    /// Rows of the decoder's learned position table: the longest decoder sequence.
    pub max_target_positions: usize,
    /// The MLP activation; only `gelu` (exact, erf-based) is supported.
    pub activation_function: String,
    /// Std of the normal initialisation of a model built from scratch.
    pub init_std: f64,
    /// Present in the config; transformers' Whisper forward does not apply it, nor does this one.
    pub scale_embedding: bool,
    /// Whether `proj_out` shares the decoder's token embedding table.
    pub tie_word_embeddings: bool,
    /// The first decoder token of every sequence.
    pub decoder_start_token_id: u32,
    /// Padding token (replaces `-100` when labels are shifted into decoder inputs).
    pub pad_token_id: Option<u32>,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s).
    pub eos_token_id: Option<TokenIds>,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        WhisperConfig {
            model_type: "whisper".into(),
            vocab_size: 51865,
            num_mel_bins: 80,
            d_model: 384,
            encoder_layers: 4,
            decoder_layers: 4,
            encoder_attention_heads: 6,
            decoder_attention_heads: 6,
            encoder_ffn_dim: 1536,
            decoder_ffn_dim: 1536,
            max_source_positions: 1500,
            max_target_positions: 448,
            activation_function: "gelu".into(),
            init_std: 0.02,
            scale_embedding: false,
            tie_word_embeddings: true,
            decoder_start_token_id: 50257,
            pad_token_id: Some(50256),
            bos_token_id: Some(50256),
            eos_token_id: Some(TokenIds::One(50256)),
        }
    }
}

impl WhisperConfig {
    /// Reads and validates a `config.json`.
    ///
    /// Fails with [`Error::Io`] naming the file when it cannot be read, [`Error::Json`] when it
    /// is malformed, and as [`WhisperConfig::validate`] does.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let (text, path) = crate::config_file::read(path)?;
        Self::from_json(&text, &path)
    }

    /// Parses and validates the text of a `config.json`; `path` only names the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let (config, _): (WhisperConfig, _) = crate::config_file::parse(text, path, &[])?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that a model can be built: `model_type` and activation supported, head counts that
    /// divide `d_model`, an even `d_model` of at least 4 (the sinusoidal encoder positions split
    /// it into sines and cosines) and non-empty inputs.
    pub fn validate(&self) -> Result<()> {
        crate::config_file::require_positive(&[("encoder_layers", self.encoder_layers), ("decoder_layers", self.decoder_layers), ("encoder_ffn_dim", self.encoder_ffn_dim), ("decoder_ffn_dim", self.decoder_ffn_dim)])?;
        if !SUPPORTED_MODEL_TYPES.contains(&self.model_type.as_str()) {
            return Err(Error::Unsupported {
                what: format!("model_type `{}` as Whisper", self.model_type),
                supported: SUPPORTED_MODEL_TYPES.join(", "),
            });
        }
        if self.activation_function != "gelu" {
            return Err(Error::Unsupported { what: format!("activation_function `{}`", self.activation_function), supported: "gelu".into() });
        }
        if self.d_model < 4 || !self.d_model.is_multiple_of(2) {
            return Err(Error::config("d_model", self.d_model, "an even width of at least 4 (sinusoidal positions)"));
        }
        for (field, heads) in [("encoder_attention_heads", self.encoder_attention_heads), ("decoder_attention_heads", self.decoder_attention_heads)] {
            if heads == 0 || !self.d_model.is_multiple_of(heads) {
                return Err(Error::config(field, heads, format!("a non-zero divisor of d_model ({})", self.d_model)));
            }
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("num_mel_bins", self.num_mel_bins),
            ("max_source_positions", self.max_source_positions),
            ("max_target_positions", self.max_target_positions),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::config(field, value, "a positive number"));
            }
        }
        if self.decoder_start_token_id as usize >= self.vocab_size {
            return Err(Error::config("decoder_start_token_id", self.decoder_start_token_id, format!("an id below vocab_size ({})", self.vocab_size)));
        }
        Ok(())
    }

    /// Frames of `input_features` the encoder takes: `2 * max_source_positions` (conv2 has stride 2).
    pub fn input_frames(&self) -> usize {
        self.max_source_positions.saturating_mul(2)
    }

    /// The end-of-sequence ids, possibly none.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        TokenIds::all(self.eos_token_id.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> WhisperConfig {
        serde_json::from_str(json).expect("succeeds")
    }

    #[test]
    fn defaults_and_checks() {
        let tiny = parse(r#"{"d_model": 32, "encoder_attention_heads": 4, "decoder_attention_heads": 4, "vocab_size": 96, "decoder_start_token_id": 1, "eos_token_id": 16}"#);
        assert!(tiny.validate().is_ok());
        assert_eq!((tiny.input_frames(), tiny.eos_token_ids()), (3000, vec![16]));
        assert!(matches!(parse(r#"{"model_type": "t5"}"#).validate(), Err(Error::Unsupported { .. })));
        assert!(matches!(parse(r#"{"activation_function": "relu"}"#).validate(), Err(Error::Unsupported { .. })));
        assert!(matches!(parse(r#"{"encoder_attention_heads": 5}"#).validate(), Err(Error::InvalidConfig { .. })));
        assert!(matches!(parse(r#"{"vocab_size": 10}"#).validate(), Err(Error::InvalidConfig { .. })));
    }

    #[test]
    fn zero_and_indivisible_sizes_name_their_field() {
        use crate::config_file::invalid_field;
        let tiny = r#""d_model": 32, "encoder_attention_heads": 4, "vocab_size": 96, "decoder_start_token_id": 1"#;
        let field = |extra: &str| invalid_field(parse(&format!("{{{tiny}, {extra}}}")).validate());
        assert_eq!(field(r#""decoder_attention_heads": 0"#), "decoder_attention_heads");
        assert_eq!(field(r#""decoder_attention_heads": 5"#), "decoder_attention_heads");
        assert_eq!(field(r#""decoder_attention_heads": 4, "decoder_layers": 0"#), "decoder_layers");
    }

    #[test]
    fn huge_position_tables_do_not_overflow() {
        let c = parse(r#"{"max_source_positions": 18446744073709551615}"#);
        assert_eq!(c.input_frames(), usize::MAX);
    }
}
