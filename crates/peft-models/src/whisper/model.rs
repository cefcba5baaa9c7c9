//! `WhisperModel`: encoder and decoder without a head (feature extraction), and loading.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdapterSites, Result, SiteMut};
use peft_io::weights::{LoadOptions, load_from_dir};
use std::path::Path;

use super::config::WhisperConfig;
use super::decoder::WhisperDecoder;
use super::encoder::WhisperEncoder;
use crate::generation::EncoderOutput;

/// transformers' `WhisperModel`: the audio encoder and the text decoder, at paths `encoder.*` and
/// `decoder.*`; [`super::WhisperForConditionalGeneration`] puts it under `model`.
#[derive(Module, Debug)]
pub struct WhisperModel {
    /// The audio encoder.
    pub encoder: WhisperEncoder,
    /// The text decoder.
    pub decoder: WhisperDecoder,
}

impl WhisperModel {
    /// A new model for a validated `config`, weights drawn from `N(0, init_std)`.
    pub fn new(config: &WhisperConfig, device: &Device) -> Self {
        WhisperModel { encoder: WhisperEncoder::new(config, device), decoder: WhisperDecoder::new(config, device) }
    }

    /// Loads a transformers folder holding a `WhisperModel` or a `WhisperForConditionalGeneration`
    /// (its `model.` prefix is stripped; `proj_out` is ignored).
    ///
    /// # Errors
    /// [`peft_core::Error::Io`] naming `config.json` or `model.safetensors` when missing, the
    /// config's errors ([`WhisperConfig::from_file`]) and the loader's
    /// ([`peft_core::Error::MissingTensor`], [`peft_core::Error::ShapeMismatch`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = WhisperConfig::from_file(dir.join("config.json"))?;
        let options = LoadOptions { prefixes: vec!["model.".into()], optional: Vec::new() };
        load_from_dir(Self::new(&config, device), dir, &options)
    }

    /// Runs the encoder ([`WhisperEncoder::forward`]); Whisper's encoder output has no padding.
    ///
    /// # Shapes
    /// - `input_features`: `[batch, num_mel_bins, 2 * max_source_positions]`
    pub fn encode(&self, input_features: Tensor<3>) -> Result<EncoderOutput> {
        Ok(EncoderOutput { hidden: self.encoder.forward(input_features)?, mask: None })
    }

    /// The decoder's last hidden states for `decoder_input_ids` given audio features, as
    /// transformers' `WhisperModel(...).last_hidden_state`.
    ///
    /// Fails as [`WhisperEncoder::forward`] and [`WhisperDecoder::check_length`] do.
    ///
    /// # Shapes
    /// - `input_features`: `[batch, num_mel_bins, 2 * max_source_positions]`
    /// - `decoder_input_ids`, `decoder_attention_mask`: `[batch, len]`
    /// - output: `[batch, len, d_model]`
    pub fn forward(&self, input_features: Tensor<3>, decoder_input_ids: Tensor<2, Int>, decoder_attention_mask: Option<Tensor<2, Int>>) -> Result<Tensor<3>> {
        let encoder = self.encode(input_features)?;
        self.decoder.forward_embeds(self.decoder.embed(decoder_input_ids), decoder_attention_mask, &encoder, None)
    }

    /// Lists this model's adapter sites under `prefix` (`""` or `"model."`).
    pub(crate) fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.encoder.visit_sites_prefixed(&format!("{prefix}encoder."), f);
        self.decoder.visit_sites_prefixed(&format!("{prefix}decoder."), f);
    }
}

impl AdapterSites for WhisperModel {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.visit_sites_prefixed("", f);
    }
}
