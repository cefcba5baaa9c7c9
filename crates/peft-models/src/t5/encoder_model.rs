//! `T5EncoderModel`: the encoder alone, for feature extraction.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedEmbedding, AdapterSites, Result, SiteMut};
use std::path::Path;

use super::config::T5Config;
use super::load::Checkpoint;
use super::stack::T5Stack;

/// transformers' `T5EncoderModel` / `MT5EncoderModel`: `shared` and the encoder. Reads a full
/// `T5ForConditionalGeneration` checkpoint too (the decoder's weights are ignored).
#[derive(Module, Debug)]
pub struct T5EncoderModel {
    /// The token embedding table, `[vocab_size, d_model]`.
    pub shared: AdaptedEmbedding,
    /// The encoder, at paths `encoder.*`.
    pub encoder: T5Stack,
    /// The config the model was built from.
    #[module(skip)]
    pub config: T5Config,
}

impl T5EncoderModel {
    /// A new encoder for a validated `config`, weights drawn as transformers initialises them.
    pub fn new(config: &T5Config, device: &Device) -> Self {
        T5EncoderModel {
            shared: super::embedding(config.vocab_size, config.d_model, config.initializer_factor, device),
            encoder: T5Stack::new(config, false, device),
            config: config.clone(),
        }
    }

    /// Loads a transformers folder (`config.json`, `model.safetensors`).
    ///
    /// # Errors
    /// As [`super::T5ForConditionalGeneration::from_pretrained`].
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        Self::from_pretrained_with_config(dir, T5Config::from_file(dir.join("config.json"))?, device)
    }

    /// Like [`T5EncoderModel::from_pretrained`] with a config given in code.
    pub fn from_pretrained_with_config(dir: impl AsRef<Path>, config: T5Config, device: &Device) -> Result<Self> {
        config.validate()?;
        Checkpoint::read(dir.as_ref())?.load(Self::new(&config, device), Vec::new())
    }

    /// The encoder's last hidden states.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]` (1 = real token, 0 = padding)
    /// - output: `[batch, len, d_model]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.forward_embeds(self.shared.forward(input_ids), attention_mask)
    }

    /// The encoder's last hidden states from input embeddings (prompt tuning's entry point;
    /// [`T5EncoderModel::embed`] gives the token part).
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, d_model]`, `attention_mask`: `[batch, len]`
    /// - output: `[batch, len, d_model]`
    pub fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.encoder.encode(embeds, attention_mask.as_ref())
    }

    /// Token embeddings from `shared`.
    ///
    /// # Shapes
    /// - `ids`: `[batch, len]`, output `[batch, len, d_model]`
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.shared.forward(ids)
    }

    /// Lists the sites under `prefix` (`""`, or `"transformer."` inside a task model).
    pub(crate) fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f(&format!("{prefix}shared"), SiteMut::Embedding(&mut self.shared));
        self.encoder.visit_sites_prefixed(&format!("{prefix}encoder."), f);
    }
}

impl AdapterSites for T5EncoderModel {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.visit_sites_prefixed("", f);
    }

    fn model_dims(&self) -> Option<peft_core::ModelDims> {
        peft_core::TaskModel::dims(self).ok()
    }

    fn default_target_modules(&self) -> Vec<String> {
        super::default_targets()
    }

    fn model_type(&self) -> Option<String> {
        Some(self.config.model_type.clone())
    }
}
