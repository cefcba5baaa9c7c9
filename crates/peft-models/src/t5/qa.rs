//! `T5ForQuestionAnswering`: start and end logits on the decoder output.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedEmbedding, AdaptedLinear, AdapterSites, Result, SiteMut};
use std::path::Path;

use super::config::T5Config;
use super::heads::{encode_decode, load};
use super::stack::T5Stack;

/// transformers' `T5ForQuestionAnswering`: `shared`, `encoder`, `decoder` and `qa_outputs`
/// (start and end logits) on the decoder output.
#[derive(Module, Debug)]
pub struct T5ForQuestionAnswering {
    /// The embedding table.
    pub shared: AdaptedEmbedding,
    /// The encoder.
    pub encoder: T5Stack,
    /// The decoder.
    pub decoder: T5Stack,
    /// `d_model -> num_labels` (2: start, end).
    pub qa_outputs: AdaptedLinear,
    /// The config.
    #[module(skip)]
    pub config: T5Config,
}

impl T5ForQuestionAnswering {
    /// A new model with `config.num_labels()` outputs per token.
    pub fn new(config: &T5Config, device: &Device) -> Self {
        let f = config.initializer_factor;
        T5ForQuestionAnswering {
            shared: super::embedding(config.vocab_size, config.d_model, f, device),
            encoder: T5Stack::new(config, false, device),
            decoder: T5Stack::new(config, true, device),
            qa_outputs: super::linear(config.d_model, config.num_labels(), true, f * (config.d_model as f64).powf(-0.5), device),
            config: config.clone(),
        }
    }

    /// Loads a transformers `T5ForQuestionAnswering` folder (`config.json`, safetensors); a file without
    /// `qa_outputs` fails with [`peft_core::Error::MissingTensor`] (see [`T5ForQuestionAnswering::from_pretrained_with`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// Loads a transformers folder; with `new_head` `qa_outputs` may be absent (kept fresh).
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        load(dir.as_ref(), new_head, |c| Self::new(c, device))
    }

    /// Start and end logits per decoder position (the decoder reads `input_ids` shifted right).
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`; outputs `[batch, len]` each
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> (Tensor<2>, Tensor<2>) {
        let hidden = encode_decode(&self.shared, &self.encoder, &self.decoder, &self.config, input_ids, attention_mask);
        let logits = self.qa_outputs.forward(hidden);
        let [batch, len, width] = logits.dims();
        let start = logits.clone().narrow(2, 0, 1).reshape([batch, len]);
        // transformers splits the last axis in two; one label gives start = end.
        let end = logits.narrow(2, usize::from(width > 1), 1).reshape([batch, len]);
        (start, end)
    }
}

impl AdapterSites for T5ForQuestionAnswering {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f("shared", SiteMut::Embedding(&mut self.shared));
        self.encoder.visit_sites_prefixed("encoder.", f);
        self.decoder.visit_sites_prefixed("decoder.", f);
        f("qa_outputs", SiteMut::Linear(&mut self.qa_outputs));
    }

    fn default_target_modules(&self) -> Vec<String> {
        super::default_targets()
    }

    fn model_type(&self) -> Option<String> {
        Some(self.config.model_type.clone())
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["qa_outputs".into()]
    }
}
