//! What an [`super::AutoModel`] reads and returns, for every family at once.

use burn::tensor::{Int, Tensor, TensorData};
use peft_core::{Error, Result};

/// The inputs of any architecture; each family reads the ones it needs.
///
/// # Shapes
/// - `input_ids`, `attention_mask`: `[batch, len]`
/// - `decoder_input_ids`: `[batch, target_len]` (encoder-decoders)
/// - `pixel_values`: `[batch, channels, height, width]` (image models)
/// - `input_features`: `[batch, mel_bins, frames]` (speech models)
#[derive(Clone, Debug, Default)]
pub struct AutoInputs {
    /// Token ids.
    pub input_ids: Option<Tensor<2, Int>>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Option<Tensor<2, Int>>,
    /// The decoder's token ids (encoder-decoders).
    pub decoder_input_ids: Option<Tensor<2, Int>>,
    /// Images.
    pub pixel_values: Option<Tensor<4>>,
    /// Log-mel spectrogram frames.
    pub input_features: Option<Tensor<3>>,
}

impl AutoInputs {
    /// Token ids alone.
    pub fn ids(input_ids: Tensor<2, Int>) -> Self {
        AutoInputs { input_ids: Some(input_ids), ..Default::default() }
    }

    /// The token ids, or an error saying the model needs them.
    pub fn need_ids(&self) -> Result<Tensor<2, Int>> {
        self.input_ids.clone().ok_or_else(|| missing("input_ids", "token ids (`--input-ids 5,6,7`)"))
    }

    /// The decoder ids, or an error saying the model needs them.
    pub fn need_decoder_ids(&self) -> Result<Tensor<2, Int>> {
        self.decoder_input_ids.clone().ok_or_else(|| missing("decoder_input_ids", "decoder token ids (`--decoder-input-ids 0,3,4`)"))
    }

    /// The images, or an error saying the model needs them.
    pub fn need_pixels(&self) -> Result<Tensor<4>> {
        self.pixel_values.clone().ok_or_else(|| missing("pixel_values", "images (`--pixel-values FILE.safetensors`)"))
    }

    /// The audio features, or an error saying the model needs them.
    pub fn need_features(&self) -> Result<Tensor<3>> {
        self.input_features.clone().ok_or_else(|| missing("input_features", "audio features (`--input-features FILE.safetensors`)"))
    }
}

fn missing(input: &str, what: &str) -> Error {
    Error::InvalidState(format!("this model needs `{input}`: pass {what}"))
}

/// A head's output, whatever its rank.
#[derive(Clone, Debug)]
pub enum AutoOutput {
    /// `[batch, classes]` (sequence or image classification).
    Rank2(Tensor<2>),
    /// `[batch, len, vocab | classes | hidden | 2]` (LM logits, token classes, features, QA start/end).
    Rank3(Tensor<3>),
    /// `[batch, classes | channels, height, width]` (semantic segmentation, SegFormer features).
    Rank4(Tensor<4>),
}

impl AutoOutput {
    /// The values and shape, on the host.
    pub fn into_data(self) -> TensorData {
        match self {
            AutoOutput::Rank2(t) => t.into_data(),
            AutoOutput::Rank3(t) => t.into_data(),
            AutoOutput::Rank4(t) => t.into_data(),
        }
    }
}
