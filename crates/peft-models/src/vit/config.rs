//! `ViTConfig`: transformers' `config.json` for ViT.

use peft_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::layers::HiddenAct;

/// The `model_type`s this module builds.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["vit"];
const HIDDEN_ACTS: &[&str] = &["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"];

/// A side length or `[height, width]`, as transformers accepts for `image_size` and `patch_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size2d {
    /// The same length both ways.
    Square(usize),
    /// `[height, width]`.
    Pair([usize; 2]),
}

impl Size2d {
    /// `[height, width]`.
    pub fn dims(self) -> [usize; 2] {
        match self {
            Size2d::Square(n) => [n, n],
            Size2d::Pair(p) => p,
        }
    }
}

/// A ViT configuration, read from transformers' `config.json`.
///
/// Missing keys take transformers' `ViTConfig` defaults (vit-base-patch16-224); unknown keys are
/// ignored, as transformers writes many (`architectures`, `encoder_stride`, ...) that do not shape
/// the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViTConfig {
    /// Always `vit`.
    pub model_type: String,
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
    /// Standard deviation of the normal initialisation of new weights.
    pub initializer_range: f64,
    /// `eps` of every LayerNorm.
    pub layer_norm_eps: f64,
    /// The image size the position embeddings were made for.
    pub image_size: Size2d,
    /// Side of a square patch (or `[height, width]`).
    pub patch_size: Size2d,
    /// Channels of `pixel_values` (3 for RGB).
    pub num_channels: usize,
    /// Whether the query, key and value projections have a bias.
    pub qkv_bias: bool,
    /// Output width of the pooler; `hidden_size` when absent.
    pub pooler_output_size: Option<usize>,
    /// The pooler's activation; only `tanh`.
    pub pooler_act: String,
    /// Labels of a classification head, by index as a string (`"0"`).
    pub id2label: Option<BTreeMap<String, String>>,
    /// Number of labels of a classification head: `id2label`'s length when present.
    pub num_labels: usize,
}

impl Default for ViTConfig {
    fn default() -> Self {
        ViTConfig {
            model_type: "vit".into(),
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: HiddenAct::Gelu,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            image_size: Size2d::Square(224),
            patch_size: Size2d::Square(16),
            num_channels: 3,
            qkv_bias: true,
            pooler_output_size: None,
            pooler_act: "tanh".into(),
            id2label: None,
            num_labels: 2,
        }
    }
}

impl ViTConfig {
    /// Reads `config.json` from a model folder (or the file itself).
    ///
    /// Fails with [`Error::Io`] when it cannot be read, [`Error::Json`] when it is malformed,
    /// [`Error::Unsupported`] for another `model_type`, `hidden_act` or `pooler_act`, and
    /// [`Error::InvalidConfig`] for sizes that cannot build a model.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let (text, path) = crate::config_file::read(path)?;
        Self::from_json(&text, &path)
    }

    /// Parses the text of a `config.json`; `path` only names the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let (mut config, labels): (ViTConfig, _) = crate::config_file::parse(text, path, &[("model_type", SUPPORTED_MODEL_TYPES), ("hidden_act", HIDDEN_ACTS)])?;
        if let Some(n) = labels {
            config.num_labels = n;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that the sizes can build a model.
    pub fn validate(&self) -> Result<()> {
        crate::config_file::require_positive(&[("hidden_size", self.hidden_size), ("num_hidden_layers", self.num_hidden_layers), ("intermediate_size", self.intermediate_size), ("num_channels", self.num_channels)])?;
        if self.pooler_act != "tanh" {
            return Err(Error::Unsupported { what: format!("pooler_act `{}`", self.pooler_act), supported: "tanh".into() });
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(
                "num_attention_heads",
                self.num_attention_heads,
                format!("use a divisor of hidden_size = {}", self.hidden_size),
            ));
        }
        let ([h, w], [ph, pw]) = (self.image_size.dims(), self.patch_size.dims());
        if ph == 0 || pw == 0 || h < ph || w < pw {
            return Err(Error::config("patch_size", format!("{ph}x{pw}"), format!("use a non-zero patch no larger than image_size {h}x{w}")));
        }
        Ok(())
    }

    /// Patches per image: `(height / patch_h) * (width / patch_w)` (a remainder is cut off, as
    /// the strided convolution does).
    pub fn num_patches(&self) -> usize {
        let ([h, w], [ph, pw]) = (self.image_size.dims(), self.patch_size.dims());
        (h / ph.max(1)).saturating_mul(w / pw.max(1))
    }

    /// Width of the pooler output.
    pub fn pooler_size(&self) -> usize {
        self.pooler_output_size.unwrap_or(self.hidden_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_indivisible_sizes_name_their_field() {
        use crate::config_file::invalid_field;
        let field = |json: &str| invalid_field(ViTConfig::from_json(json, Path::new("config.json")).map(|_| ()));
        assert_eq!(field(r#"{"num_attention_heads": 0}"#), "num_attention_heads");
        assert_eq!(field(r#"{"num_hidden_layers": 0}"#), "num_hidden_layers");
        assert_eq!(field(r#"{"patch_size": 0}"#), "patch_size");
    }

    #[test]
    fn huge_images_do_not_overflow() {
        let c = ViTConfig::from_json(r#"{"image_size": 18446744073709551615, "patch_size": 1}"#, Path::new("config.json")).expect("valid");
        assert_eq!(c.num_patches(), usize::MAX);
    }
}
