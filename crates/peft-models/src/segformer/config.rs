//! `SegformerConfig`: transformers' `config.json` for SegFormer (MiT encoders).

use peft_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::layers::HiddenAct;

/// The `model_type`s this module builds.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["segformer"];
const HIDDEN_ACTS: &[&str] = &["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"];

/// A SegFormer configuration, read from transformers' `config.json`.
///
/// Missing keys take transformers' `SegformerConfig` defaults (mit-b0); unknown keys are ignored.
/// Per-stage lists (`depths`, `hidden_sizes`, ...) have one entry per encoder stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SegformerConfig {
    /// Always `segformer`.
    pub model_type: String,
    /// Channels of `pixel_values` (3 for RGB).
    pub num_channels: usize,
    /// Number of encoder stages.
    pub num_encoder_blocks: usize,
    /// Layers per stage.
    pub depths: Vec<usize>,
    /// Spatial reduction of keys and values per stage (1: none).
    pub sr_ratios: Vec<usize>,
    /// Width of each stage.
    pub hidden_sizes: Vec<usize>,
    /// Kernel of each stage's overlapping patch embedding.
    pub patch_sizes: Vec<usize>,
    /// Stride of each stage's patch embedding.
    pub strides: Vec<usize>,
    /// Attention heads per stage; each must divide the stage's width.
    pub num_attention_heads: Vec<usize>,
    /// Mix-FFN width over stage width, per stage.
    pub mlp_ratios: Vec<f64>,
    /// Activation of the Mix-FFN.
    pub hidden_act: HiddenAct,
    /// Dropout in the Mix-FFN and after attention (training only).
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    pub attention_probs_dropout_prob: f64,
    /// Dropout before the decode head's classifier (training only).
    pub classifier_dropout_prob: f64,
    /// Standard deviation of the normal initialisation of new weights.
    pub initializer_range: f64,
    /// Stochastic depth (training only; not applied here, so training matches `drop_path_rate = 0`).
    pub drop_path_rate: f64,
    /// Width of the all-MLP decode head.
    pub decoder_hidden_size: usize,
    /// Label left out of the segmentation loss.
    pub semantic_loss_ignore_index: i64,
    /// Whether the last stage is reshaped to `[batch, channels, height, width]`; only `true`.
    pub reshape_last_stage: bool,
    /// Labels of a head, by index as a string (`"0"`).
    pub id2label: Option<BTreeMap<String, String>>,
    /// Number of labels of a head: `id2label`'s length when present.
    pub num_labels: usize,
}

impl Default for SegformerConfig {
    fn default() -> Self {
        SegformerConfig {
            model_type: "segformer".into(),
            num_channels: 3,
            num_encoder_blocks: 4,
            depths: vec![2, 2, 2, 2],
            sr_ratios: vec![8, 4, 2, 1],
            hidden_sizes: vec![32, 64, 160, 256],
            patch_sizes: vec![7, 3, 3, 3],
            strides: vec![4, 2, 2, 2],
            num_attention_heads: vec![1, 2, 5, 8],
            mlp_ratios: vec![4.0; 4],
            hidden_act: HiddenAct::Gelu,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            classifier_dropout_prob: 0.1,
            initializer_range: 0.02,
            drop_path_rate: 0.1,
            decoder_hidden_size: 256,
            semantic_loss_ignore_index: 255,
            reshape_last_stage: true,
            id2label: None,
            num_labels: 2,
        }
    }
}

impl SegformerConfig {
    /// Reads `config.json` from a model folder (or the file itself).
    ///
    /// Fails with [`Error::Io`] when it cannot be read, [`Error::Json`] when it is malformed,
    /// [`Error::Unsupported`] for another `model_type` or `hidden_act` or
    /// `reshape_last_stage = false`, and [`Error::InvalidConfig`] for sizes that cannot build a model.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let (text, path) = crate::config_file::read(path)?;
        Self::from_json(&text, &path)
    }

    /// Parses the text of a `config.json`; `path` only names the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let (mut config, labels): (SegformerConfig, _) = crate::config_file::parse(text, path, &[("model_type", SUPPORTED_MODEL_TYPES), ("hidden_act", HIDDEN_ACTS)])?;
        if let Some(n) = labels {
            config.num_labels = n;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that the sizes can build a model.
    pub fn validate(&self) -> Result<()> {
        crate::config_file::require_positive(&[("num_channels", self.num_channels), ("decoder_hidden_size", self.decoder_hidden_size)])?;
        if !self.reshape_last_stage {
            return Err(Error::Unsupported { what: "reshape_last_stage = false".into(), supported: "true".into() });
        }
        let n = self.num_encoder_blocks;
        let lengths = [
            ("depths", self.depths.len()),
            ("sr_ratios", self.sr_ratios.len()),
            ("hidden_sizes", self.hidden_sizes.len()),
            ("patch_sizes", self.patch_sizes.len()),
            ("strides", self.strides.len()),
            ("num_attention_heads", self.num_attention_heads.len()),
            ("mlp_ratios", self.mlp_ratios.len()),
        ];
        for (field, len) in lengths {
            if len != n {
                return Err(Error::config(field, format!("{len} entries"), format!("give one per stage: num_encoder_blocks = {n}")));
            }
        }
        if n == 0 {
            return Err(Error::config("num_encoder_blocks", 0, "use at least one stage"));
        }
        for s in 0..n {
            let (width, heads) = (self.hidden_sizes[s], self.num_attention_heads[s]);
            if heads == 0 || !width.is_multiple_of(heads) {
                return Err(Error::config("num_attention_heads", heads, format!("stage {s}: use a divisor of its hidden size {width}")));
            }
            if self.strides[s] == 0 || self.patch_sizes[s] == 0 || self.sr_ratios[s] == 0 {
                return Err(Error::config("strides / patch_sizes / sr_ratios", format!("stage {s}"), "use sizes of at least 1"));
            }
        }
        Ok(())
    }

    /// Width of stage `s`'s Mix-FFN: `int(hidden_size * mlp_ratio)`.
    pub fn mlp_width(&self, s: usize) -> usize {
        (self.hidden_sizes[s] as f64 * self.mlp_ratios[s]) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_indivisible_sizes_name_their_field() {
        use crate::config_file::invalid_field;
        let field = |json: &str| invalid_field(SegformerConfig::from_json(json, Path::new("config.json")).map(|_| ()));
        assert_eq!(field(r#"{"num_attention_heads": [1, 0, 5, 8]}"#), "num_attention_heads");
        assert_eq!(field(r#"{"num_encoder_blocks": 0, "depths": [], "sr_ratios": [], "hidden_sizes": [], "patch_sizes": [], "strides": [], "num_attention_heads": [], "mlp_ratios": []}"#), "num_encoder_blocks");
        assert_eq!(field(r#"{"decoder_hidden_size": 0}"#), "decoder_hidden_size");
    }
}
