//! BLOOM's task heads: sequence classification (`score`), token classification (`classifier`)
//! and extractive question answering (`qa_outputs`), each on a [`BloomModel`] at `transformer.*`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedLinear, AdapterSites, Result, SiteMut, TaskType};
use std::path::Path;

use super::config::BloomConfig;
use super::model::BloomModel;
use crate::gpt2::pooling::{last_non_pad, load_head, span_cross_entropy, split_span, token_cls_modules_to_save, token_cross_entropy};
use crate::bert::cross_entropy;

/// transformers' `BloomForSequenceClassification`: `score` (no bias) on every position, pooled
/// at each row's last token that is not `pad_token_id`.
#[derive(Module, Debug)]
pub struct BloomForSequenceClassification {
    /// The stack, at paths `transformer.*`.
    pub transformer: BloomModel,
    /// `hidden_size -> num_labels`, no bias.
    pub score: AdaptedLinear,
    /// The pad id pooling looks for.
    #[module(skip)]
    pub pad_token_id: Option<u32>,
}

impl BloomForSequenceClassification {
    /// A new model for a validated `config` with `config.num_labels` outputs.
    pub fn new(config: &BloomConfig, device: &Device) -> Self {
        BloomForSequenceClassification {
            transformer: BloomModel::new(config, device),
            score: crate::gpt2::linear(config.hidden_size, config.num_labels, false, config.initializer_range, device),
            pad_token_id: config.pad_token_id,
        }
    }

    /// Loads a transformers folder holding this task model.
    ///
    /// # Errors
    /// As [`BloomConfig::from_file`], and the loader's: [`peft_core::Error::MissingTensor`] for a
    /// folder without the head (a bare or causal-LM checkpoint: see
    /// [`BloomForSequenceClassification::from_pretrained_with`]), [`peft_core::Error::ShapeMismatch`].
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// Like [`BloomForSequenceClassification::from_pretrained`]; with `new_head`, a file without the head's weights
    /// is accepted and the head keeps its fresh initialisation.
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        let dir = dir.as_ref();
        load_head(Self::new(&BloomConfig::from_file(dir)?, device), dir, new_head)
    }

    /// Class logits at each row's last real token. Without a `pad_token_id` the last position is
    /// used (transformers refuses batches > 1 then).
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`
    /// - output: `[batch, num_labels]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<2> {
        let logits = self.score.forward(self.transformer.forward(input_ids.clone(), attention_mask));
        last_non_pad(logits, Some(&input_ids), self.pad_token_id)
    }

    /// Class logits from input embeddings, pooled at the last position (as transformers does when
    /// it cannot see pad ids).
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, hidden_size]`
    /// - `attention_mask`: `[batch, len]`
    /// - output: `[batch, num_labels]`
    pub fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<2> {
        last_non_pad(self.score.forward(self.transformer.forward_embeds(embeds, attention_mask, None)), None, None)
    }

    /// Logits and the mean cross-entropy against class `labels` (`[batch]`).
    pub fn forward_with_loss(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, labels: Tensor<1, Int>) -> (Tensor<2>, Tensor<1>) {
        let logits = self.forward(input_ids, attention_mask);
        (logits.clone(), cross_entropy(logits, labels))
    }
}

impl AdapterSites for BloomForSequenceClassification {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.transformer.visit_sites_prefixed("transformer.", f);
        f("score", SiteMut::Linear(&mut self.score));
    }

    fn default_target_modules(&self) -> Vec<String> {
        super::default_target_modules()
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["score".into()]
    }
}

/// transformers' `BloomForTokenClassification`: `classifier(dropout(h))` at every position.
#[derive(Module, Debug)]
pub struct BloomForTokenClassification {
    /// The stack, at paths `transformer.*`.
    pub transformer: BloomModel,
    /// Dropout before the classifier (training only).
    pub dropout: Dropout,
    /// `hidden_size -> num_labels`.
    pub classifier: AdaptedLinear,
}

impl BloomForTokenClassification {
    /// A new model for a validated `config` with `config.num_labels` outputs.
    pub fn new(config: &BloomConfig, device: &Device) -> Self {
        BloomForTokenClassification {
            transformer: BloomModel::new(config, device),
            dropout: DropoutConfig::new(config.classifier_dropout_prob()).init(),
            classifier: crate::gpt2::linear(config.hidden_size, config.num_labels, true, config.initializer_range, device),
        }
    }

    /// Loads a transformers folder; see [`BloomForSequenceClassification::from_pretrained`].
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// See [`BloomForSequenceClassification::from_pretrained_with`].
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        let dir = dir.as_ref();
        load_head(Self::new(&BloomConfig::from_file(dir)?, device), dir, new_head)
    }

    /// Per-token class logits.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`
    /// - output: `[batch, len, num_labels]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.classifier.forward(self.dropout.forward(self.transformer.forward(input_ids, attention_mask)))
    }

    /// Logits and the mean cross-entropy against `labels` (`[batch, len]`, -100 ignored).
    pub fn forward_with_loss(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, labels: Tensor<2, Int>) -> (Tensor<3>, Tensor<1>) {
        let logits = self.forward(input_ids, attention_mask);
        (logits.clone(), token_cross_entropy(logits, labels))
    }
}

impl AdapterSites for BloomForTokenClassification {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.transformer.visit_sites_prefixed("transformer.", f);
        f("classifier", SiteMut::Linear(&mut self.classifier));
    }

    fn default_target_modules(&self) -> Vec<String> {
        super::default_target_modules()
    }

    fn default_modules_to_save(&self, task: TaskType) -> Vec<String> {
        token_cls_modules_to_save(task)
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["classifier".into()]
    }
}

/// transformers' `BloomForQuestionAnswering`: `qa_outputs` gives a start and an end logit per token.
#[derive(Module, Debug)]
pub struct BloomForQuestionAnswering {
    /// The stack, at paths `transformer.*`.
    pub transformer: BloomModel,
    /// `hidden_size -> 2` (start, end).
    pub qa_outputs: AdaptedLinear,
}

impl BloomForQuestionAnswering {
    /// A new model for a validated `config`.
    pub fn new(config: &BloomConfig, device: &Device) -> Self {
        BloomForQuestionAnswering {
            transformer: BloomModel::new(config, device),
            qa_outputs: crate::gpt2::linear(config.hidden_size, 2, true, config.initializer_range, device),
        }
    }

    /// Loads a transformers folder; see [`BloomForSequenceClassification::from_pretrained`].
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// See [`BloomForSequenceClassification::from_pretrained_with`].
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        let dir = dir.as_ref();
        load_head(Self::new(&BloomConfig::from_file(dir)?, device), dir, new_head)
    }

    /// `qa_outputs` of every token: `[..., 0]` start, `[..., 1]` end logits.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`
    /// - output: `[batch, len, 2]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.qa_outputs.forward(self.transformer.forward(input_ids, attention_mask))
    }

    /// Start and end logits, `[batch, len]` each.
    pub fn start_end_logits(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> (Tensor<2>, Tensor<2>) {
        split_span(self.forward(input_ids, attention_mask))
    }

    /// Start and end logits and transformers' span loss ([`crate::gpt2::span_cross_entropy`]).
    pub fn forward_with_loss(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        start_positions: Tensor<1, Int>,
        end_positions: Tensor<1, Int>,
    ) -> (Tensor<2>, Tensor<2>, Tensor<1>) {
        let (start, end) = self.start_end_logits(input_ids, attention_mask);
        let loss = span_cross_entropy(start.clone(), end.clone(), start_positions, end_positions);
        (start, end, loss)
    }
}

impl AdapterSites for BloomForQuestionAnswering {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.transformer.visit_sites_prefixed("transformer.", f);
        f("qa_outputs", SiteMut::Linear(&mut self.qa_outputs));
    }

    fn default_target_modules(&self) -> Vec<String> {
        super::default_target_modules()
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["qa_outputs".into()]
    }
}
