//! The classification heads transformers puts on T5: sequence classification (on the decoder's
//! state at the last end-of-sequence token) and token classification (on the encoder).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{AdaptedEmbedding, AdaptedLinear, AdapterSites, Error, Result, SiteMut};
use std::path::Path;

use super::config::T5Config;
use crate::layers::shift_right;
use super::encoder_model::T5EncoderModel;
use super::load::Checkpoint;
use super::stack::T5Stack;
use crate::generation::EncoderOutput;

/// Head keys that may be absent when `new_head` asks for a fresh head.
fn head_keys<M: AdapterSites>(model: &M, new_head: bool) -> Vec<String> {
    if !new_head {
        return Vec::new();
    }
    model.output_head_paths().iter().flat_map(|p| [format!("{p}.weight"), format!("{p}.bias")]).collect()
}

/// Loads a task model from `dir`; with `new_head` its head may be missing from the file.
pub(super) fn load<M: AdapterSites>(dir: &Path, new_head: bool, build: impl FnOnce(&T5Config) -> M) -> Result<M> {
    let config = T5Config::from_file(dir.join("config.json"))?;
    let model = build(&config);
    let optional = head_keys(&model, new_head);
    Checkpoint::read(dir)?.load(model, optional)
}

/// Shared embedding, encoder and decoder run on `input_ids`, the decoder reading them shifted
/// right (transformers' default when no decoder inputs are given).
pub(super) fn encode_decode(shared: &AdaptedEmbedding, encoder: &T5Stack, decoder: &T5Stack, config: &T5Config, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
    let decoder_ids = shift_right(input_ids.clone(), config.decoder_start(), config.pad_token_id.unwrap_or(0));
    let hidden = encoder.encode(shared.forward(input_ids), attention_mask.as_ref());
    let encoded = EncoderOutput { hidden, mask: attention_mask };
    decoder.decode(shared.forward(decoder_ids), None, &encoded, None)
}

/// transformers' `T5ClassificationHead`: `out_proj(tanh(dense(x)))`, dropout before each.
#[derive(Module, Debug)]
pub struct T5ClassificationHead {
    /// `d_model -> d_model`.
    pub dense: AdaptedLinear,
    /// Dropout (training only).
    pub dropout: Dropout,
    /// `d_model -> num_labels`.
    pub out_proj: AdaptedLinear,
}

/// transformers' `T5ForSequenceClassification`: `transformer.{shared,encoder,decoder}` and a
/// `classification_head` on the decoder state at each row's last end-of-sequence token.
#[derive(Module, Debug)]
pub struct T5ForSequenceClassification {
    /// Embedding table at `transformer.shared`.
    pub shared: AdaptedEmbedding,
    /// Encoder at `transformer.encoder.*`.
    pub encoder: T5Stack,
    /// Decoder at `transformer.decoder.*`.
    pub decoder: T5Stack,
    /// The head.
    pub classification_head: T5ClassificationHead,
    /// The config.
    #[module(skip)]
    pub config: T5Config,
}

impl T5ForSequenceClassification {
    /// A new model with `config.num_labels()` outputs.
    pub fn new(config: &T5Config, device: &Device) -> Self {
        let (d, std) = (config.d_model, config.initializer_factor * (config.d_model as f64).powf(-0.5));
        T5ForSequenceClassification {
            shared: super::embedding(config.vocab_size, d, config.initializer_factor, device),
            encoder: T5Stack::new(config, false, device),
            decoder: T5Stack::new(config, true, device),
            classification_head: T5ClassificationHead {
                dense: super::linear(d, d, true, std, device),
                dropout: DropoutConfig::new(config.classifier_dropout).init(),
                out_proj: super::linear(d, config.num_labels(), true, std, device),
            },
            config: config.clone(),
        }
    }

    /// Loads a transformers `T5ForSequenceClassification` folder (`config.json`, safetensors); a file without
    /// the head fails with [`Error::MissingTensor`] (see [`T5ForSequenceClassification::from_pretrained_with`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// Loads a transformers folder; with `new_head` the head may be absent (kept fresh).
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        load(dir.as_ref(), new_head, |c| Self::new(c, device))
    }

    /// Class logits from the decoder state at each row's last end-of-sequence token.
    ///
    /// Fails with [`Error::InvalidState`] when a row of `input_ids` has no end-of-sequence token.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`; output `[batch, num_labels]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Result<Tensor<2>> {
        let [batch, len] = input_ids.dims();
        let eos = self.config.eos_token_ids();
        let ids: Vec<i64> = input_ids.clone().into_data().convert::<i64>().try_into_vec::<i64>().map_err(|e| Error::InvalidState(format!("input_ids: {e:?}")))?;
        let mut last = Vec::with_capacity(batch);
        for (row, tokens) in ids.chunks(len.max(1)).enumerate() {
            let at = tokens.iter().rposition(|t| u32::try_from(*t).is_ok_and(|t| eos.contains(&t)));
            let at = at.ok_or_else(|| Error::InvalidState(format!("row {row} of input_ids has no end-of-sequence token {eos:?}; T5 classifies at the last one")))?;
            last.push((row * len + at) as i64);
        }
        let hidden = encode_decode(&self.shared, &self.encoder, &self.decoder, &self.config, input_ids, attention_mask);
        let device = hidden.device();
        let d = hidden.dims()[2];
        let rows = Tensor::<1, Int>::from_data(TensorData::new(last, [batch]), &device);
        let picked = hidden.reshape([batch * len, d]).select(0, rows);
        let head = &self.classification_head;
        let x = head.dropout.forward(tanh(head.dense.forward(head.dropout.forward(picked))));
        Ok(head.out_proj.forward(x))
    }
}

impl AdapterSites for T5ForSequenceClassification {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f("transformer.shared", SiteMut::Embedding(&mut self.shared));
        self.encoder.visit_sites_prefixed("transformer.encoder.", f);
        self.decoder.visit_sites_prefixed("transformer.decoder.", f);
        f("classification_head.dense", SiteMut::Linear(&mut self.classification_head.dense));
        f("classification_head.out_proj", SiteMut::Linear(&mut self.classification_head.out_proj));
    }

    fn default_target_modules(&self) -> Vec<String> {
        super::default_targets()
    }

    fn model_type(&self) -> Option<String> {
        Some(self.config.model_type.clone())
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["classification_head.dense".into(), "classification_head.out_proj".into()]
    }
}

/// transformers' `T5ForTokenClassification`: the encoder (`transformer.*`) and a linear
/// `classifier` per token.
#[derive(Module, Debug)]
pub struct T5ForTokenClassification {
    /// The encoder model, at `transformer.*`.
    pub transformer: T5EncoderModel,
    /// Dropout (training only).
    pub dropout: Dropout,
    /// `d_model -> num_labels`.
    pub classifier: AdaptedLinear,
}

impl T5ForTokenClassification {
    /// A new model with `config.num_labels()` outputs.
    pub fn new(config: &T5Config, device: &Device) -> Self {
        T5ForTokenClassification {
            transformer: T5EncoderModel::new(config, device),
            dropout: DropoutConfig::new(config.classifier_dropout).init(),
            classifier: super::linear(config.d_model, config.num_labels(), true, config.initializer_factor, device),
        }
    }

    /// Loads a transformers `T5ForTokenClassification` folder (`config.json`, safetensors); a file without
    /// the classifier fails with [`Error::MissingTensor`] (see [`T5ForTokenClassification::from_pretrained_with`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// Loads a transformers folder; with `new_head` the classifier may be absent (kept fresh).
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        load(dir.as_ref(), new_head, |c| Self::new(c, device))
    }

    /// Logits per token.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`; output `[batch, len, num_labels]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.classifier.forward(self.dropout.forward(self.transformer.forward(input_ids, attention_mask)))
    }
}

impl AdapterSites for T5ForTokenClassification {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.transformer.visit_sites_prefixed("transformer.", f);
        f("classifier", SiteMut::Linear(&mut self.classifier));
    }

    fn default_target_modules(&self) -> Vec<String> {
        super::default_targets()
    }

    fn model_type(&self) -> Option<String> {
        Some(self.transformer.config.model_type.clone())
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["classifier".into()]
    }
}
