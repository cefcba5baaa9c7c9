//! Sequence classification heads on BERT (`bert.*` + `classifier`) and RoBERTa (`roberta.*` +
//! `classifier.dense`, `classifier.out_proj`).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedLinear, AdapterSites, Result, SiteMut};
use std::path::Path;

use super::config::BertConfig;
use super::model::{BertModel, first_token};
use crate::layers::cross_entropy;

/// BERT with a linear classifier on the pooled output (transformers'
/// `BertForSequenceClassification`).
#[derive(Module, Debug)]
pub struct BertForSequenceClassification {
    /// The encoder with its pooler, at paths `bert.*`.
    pub bert: BertModel,
    /// Dropout on the pooled output (training only).
    pub dropout: Dropout,
    /// `hidden_size -> num_labels`.
    pub classifier: AdaptedLinear,
}

impl BertForSequenceClassification {
    /// A new model for `config` with `config.num_labels` outputs.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        BertForSequenceClassification {
            bert: BertModel::new(config, device),
            dropout: DropoutConfig::new(config.classifier_dropout_prob()).init(),
            classifier: super::linear(config.hidden_size, config.num_labels, config, device),
        }
    }

    /// Loads a transformers `BertForSequenceClassification` folder (`config.json`, safetensors).
    ///
    /// A folder holding a bare `BertModel` fails with [`peft_core::Error::MissingTensor`] for the
    /// classifier; [`BertForSequenceClassification::from_pretrained_with`] can allow that.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// Like [`BertForSequenceClassification::from_pretrained`]; with `new_head`, the classifier is
    /// not read from the file (absent, or for another number of labels) and keeps its fresh initialisation.
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        let dir = dir.as_ref();
        Self::from_pretrained_with_config(dir, BertConfig::from_file(dir)?, device, new_head)
    }

    /// Like [`BertForSequenceClassification::from_pretrained_with`] with a config given in code, e.g. the folder's
    /// `config.json` with another `num_labels` for a fresh head.
    pub fn from_pretrained_with_config(dir: impl AsRef<Path>, config: BertConfig, device: &Device, new_head: bool) -> Result<Self> {
        config.validate()?;
        super::load::load_head(Self::new(&config, device), dir.as_ref(), &config, new_head)
    }

    /// Class logits.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`, `token_type_ids`: `[batch, seq]`
    /// - output: `[batch, num_labels]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<2> {
        self.head(self.bert.forward(input_ids, attention_mask, token_type_ids))
    }

    /// Class logits from word embeddings (see [`BertModel::forward_embeds`]).
    ///
    /// # Shapes
    /// - `inputs_embeds`: `[batch, seq, hidden_size]`
    /// - `attention_mask`, `token_type_ids`: `[batch, seq]`
    /// - output: `[batch, num_labels]`
    pub fn forward_embeds(&self, inputs_embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<2> {
        self.head(self.bert.forward_embeds(inputs_embeds, attention_mask, token_type_ids))
    }

    /// Logits and the mean cross-entropy against `labels` (see [`cross_entropy`]).
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`, `token_type_ids`: `[batch, seq]`
    /// - `labels`: `[batch]`
    /// - output: `([batch, num_labels], [1])`
    pub fn forward_with_loss(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        token_type_ids: Option<Tensor<2, Int>>,
        labels: Tensor<1, Int>,
    ) -> (Tensor<2>, Tensor<1>) {
        let logits = self.forward(input_ids, attention_mask, token_type_ids);
        (logits.clone(), cross_entropy(logits, labels))
    }

    fn head(&self, hidden: Tensor<3>) -> Tensor<2> {
        // `new` always builds a pooler; one removed by hand falls back to the first token.
        let pooled = match &self.bert.pooler {
            Some(pooler) => pooler.forward(hidden),
            None => first_token(hidden),
        };
        self.classifier.forward(peft_core::dropout(&self.dropout, pooled))
    }
}

impl AdapterSites for BertForSequenceClassification {
    fn model_dims(&self) -> Option<peft_core::ModelDims> {
        self.bert.prompt_dims()
    }

    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.bert.visit_sites_prefixed("bert.", f);
        f("classifier", SiteMut::Linear(&mut self.classifier));
    }

    fn default_target_modules(&self) -> Vec<String> {
        vec!["query", "value"].into_iter().map(String::from).collect()
    }

    fn model_type(&self) -> Option<String> {
        Some("bert".into())
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["classifier".into()]
    }
}

/// RoBERTa's classification head (`classifier`): `out_proj(tanh(dense(h[:, 0])))`.
#[derive(Module, Debug)]
pub struct RobertaClassificationHead {
    /// `hidden_size -> hidden_size`.
    pub dense: AdaptedLinear,
    /// Dropout before each projection (training only).
    pub dropout: Dropout,
    /// `hidden_size -> num_labels`.
    pub out_proj: AdaptedLinear,
}

impl RobertaClassificationHead {
    /// A new head for `config`.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        RobertaClassificationHead {
            dense: super::linear(config.hidden_size, config.hidden_size, config, device),
            dropout: DropoutConfig::new(config.classifier_dropout_prob()).init(),
            out_proj: super::linear(config.hidden_size, config.num_labels, config, device),
        }
    }

    /// Classifies the first token (`<s>`).
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, hidden_size]`
    /// - output: `[batch, num_labels]`
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let x = peft_core::dropout(&self.dropout, first_token(hidden));
        let x = peft_core::dropout(&self.dropout, tanh(self.dense.forward(x)));
        self.out_proj.forward(x)
    }
}

/// RoBERTa with its two-layer head on the first token (transformers'
/// `RobertaForSequenceClassification`; the encoder has no pooler).
#[derive(Module, Debug)]
pub struct RobertaForSequenceClassification {
    /// The encoder, at paths `roberta.*`.
    pub roberta: BertModel,
    /// The head, at paths `classifier.dense` and `classifier.out_proj`.
    pub classifier: RobertaClassificationHead,
}

impl RobertaForSequenceClassification {
    /// A new model for `config` with `config.num_labels` outputs.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        RobertaForSequenceClassification { roberta: BertModel::without_pooler(config, device), classifier: RobertaClassificationHead::new(config, device) }
    }

    /// Loads a transformers `RobertaForSequenceClassification` folder.
    ///
    /// A folder holding a bare `RobertaModel` fails with [`peft_core::Error::MissingTensor`] for
    /// the head; [`RobertaForSequenceClassification::from_pretrained_with`] can allow that.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// Like [`RobertaForSequenceClassification::from_pretrained`]; with `new_head`, the classifier
    /// is not read from the file (absent, or for another number of labels) and keeps its fresh initialisation.
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        let dir = dir.as_ref();
        Self::from_pretrained_with_config(dir, BertConfig::from_file(dir)?, device, new_head)
    }

    /// Like [`RobertaForSequenceClassification::from_pretrained_with`] with a config given in code, e.g. the folder's
    /// `config.json` with another `num_labels` for a fresh head.
    pub fn from_pretrained_with_config(dir: impl AsRef<Path>, config: BertConfig, device: &Device, new_head: bool) -> Result<Self> {
        config.validate()?;
        super::load::load_head(Self::new(&config, device), dir.as_ref(), &config, new_head)
    }

    /// Class logits.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`, `token_type_ids`: `[batch, seq]`
    /// - output: `[batch, num_labels]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<2> {
        self.classifier.forward(self.roberta.forward(input_ids, attention_mask, token_type_ids))
    }

    /// Class logits from word embeddings (see [`BertModel::forward_embeds`]).
    ///
    /// # Shapes
    /// - `inputs_embeds`: `[batch, seq, hidden_size]`
    /// - `attention_mask`, `token_type_ids`: `[batch, seq]`
    /// - output: `[batch, num_labels]`
    pub fn forward_embeds(&self, inputs_embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<2> {
        self.classifier.forward(self.roberta.forward_embeds(inputs_embeds, attention_mask, token_type_ids))
    }

    /// Logits and the mean cross-entropy against `labels` (see [`cross_entropy`]).
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`, `token_type_ids`: `[batch, seq]`
    /// - `labels`: `[batch]`
    /// - output: `([batch, num_labels], [1])`
    pub fn forward_with_loss(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        token_type_ids: Option<Tensor<2, Int>>,
        labels: Tensor<1, Int>,
    ) -> (Tensor<2>, Tensor<1>) {
        let logits = self.forward(input_ids, attention_mask, token_type_ids);
        (logits.clone(), cross_entropy(logits, labels))
    }
}

impl AdapterSites for RobertaForSequenceClassification {
    fn model_dims(&self) -> Option<peft_core::ModelDims> {
        self.roberta.prompt_dims()
    }

    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.roberta.visit_sites_prefixed("roberta.", f);
        f("classifier.dense", SiteMut::Linear(&mut self.classifier.dense));
        f("classifier.out_proj", SiteMut::Linear(&mut self.classifier.out_proj));
    }

    fn default_target_modules(&self) -> Vec<String> {
        vec!["query", "value"].into_iter().map(String::from).collect()
    }

    fn model_type(&self) -> Option<String> {
        Some("roberta".into())
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["classifier.dense".into(), "classifier.out_proj".into()]
    }
}
