//! The task heads of the decoder-only families, each on a [`DecoderStack`] at `transformer.*`:
//! sequence classification (`score`), token classification (`classifier`) and extractive
//! question answering (`qa_outputs`), as transformers' `GPT2For*` and `BloomFor*` define them.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedLinear, AdapterSites, ModelInputs, Result, SiteMut, TaskType};
use std::path::Path;

use super::{DecoderConfig, DecoderStack, HeadConfig, head_keys, input_embeds, load_transformer};
use crate::cache::KvCache;
use crate::layers::{cross_entropy, linear, span_cross_entropy, token_cross_entropy};

/// Loads a head model; with `new_head` the file may lack the head's weights (fresh ones kept).
fn load_head<M: AdapterSites>(model: M, dir: &Path, new_head: bool) -> Result<M> {
    let optional = if new_head { head_keys(&model.output_head_paths()) } else { Vec::new() };
    load_transformer(model, dir, optional)
}

/// Loads a classification head model with `num_labels` outputs: the folder's head when it has
/// one of that size, else a fresh one (a bare or causal-LM checkpoint).
fn load_sized<C: HeadConfig, M: AdapterSites>(dir: &Path, num_labels: usize, build: impl Fn(&C) -> M) -> Result<M> {
    let mut config = C::read(dir)?;
    config.set_num_labels(num_labels);
    match load_head(build(&config), dir, false) {
        Err(peft_core::Error::MissingTensor { .. } | peft_core::Error::ShapeMismatch { .. }) => load_head(build(&config), dir, true),
        other => other,
    }
}

/// Each row's logits at its last token that is not `pad_token_id`, as transformers' decoder
/// sequence classifiers pool: index `argmax(t * (ids[t] != pad))`, so a row of padding only
/// pools position 0. Without `input_ids` (embeddings given) or a pad id, the last position.
///
/// # Shapes
/// - `logits`: `[batch, len, n]`
/// - `input_ids`: `[batch, len]`
/// - output: `[batch, n]`
fn last_non_pad(logits: Tensor<3>, input_ids: Option<&Tensor<2, Int>>, pad_token_id: Option<u32>) -> Tensor<2> {
    let [batch, len, n] = logits.dims();
    let device = logits.device();
    let index = match (input_ids, pad_token_id) {
        (Some(ids), Some(pad)) => {
            let real = ids.clone().not_equal_elem(i64::from(pad)).int();
            let positions = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
            (positions * real).argmax(1)
        }
        _ => Tensor::<2, Int>::full([batch, 1], len.saturating_sub(1) as i64, &device),
    };
    logits.gather(1, index.reshape([batch, 1, 1]).repeat_dim(2, n)).reshape([batch, n])
}

/// transformers' `*ForSequenceClassification` on a decoder: `score` (no bias) on every position,
/// pooled at each row's last token that is not `pad_token_id`.
#[derive(Module, Debug)]
pub struct DecoderForSequenceClassification<S: DecoderStack> {
    /// The stack, at paths `transformer.*`.
    pub transformer: S,
    /// `hidden_size -> num_labels`, no bias.
    pub score: AdaptedLinear,
    /// The pad id pooling looks for.
    #[module(skip)]
    pub pad_token_id: Option<u32>,
}

impl<S: DecoderStack<Config: HeadConfig>> DecoderForSequenceClassification<S> {
    /// A new model for a validated `config` with `config.num_labels` outputs.
    pub fn new(config: &S::Config, device: &Device) -> Self {
        DecoderForSequenceClassification {
            transformer: S::build(config, device),
            score: linear(config.hidden_size(), config.num_labels(), false, config.initializer_range(), device),
            pad_token_id: config.pad_token_id(),
        }
    }

    /// Loads a transformers folder holding this task model.
    ///
    /// # Errors
    /// As the family config's `from_file`, and the loader's: [`peft_core::Error::MissingTensor`]
    /// for a folder without the head (a bare or causal-LM checkpoint: see `from_pretrained_with`),
    /// [`peft_core::Error::ShapeMismatch`].
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// Like `from_pretrained`; with `new_head`, a file without the head's weights is accepted
    /// and the head keeps its fresh initialisation.
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        let dir = dir.as_ref();
        load_head(Self::new(&S::Config::read(dir)?, device), dir, new_head)
    }

    /// Loads with a head of `num_labels` outputs (the size of an adapter's saved head): the
    /// folder's head when it has one of that size, else a fresh one.
    pub fn from_pretrained_with_num_labels(dir: impl AsRef<Path>, device: &Device, num_labels: usize) -> Result<Self> {
        load_sized(dir.as_ref(), num_labels, |config: &S::Config| Self::new(config, device))
    }

    /// Class logits at each row's last real token. Without a `pad_token_id` the last position is
    /// used (transformers refuses batches > 1 then).
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`
    /// - output: `[batch, num_labels]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<2> {
        let hidden = self.transformer.forward_embeds(self.transformer.embed(input_ids.clone()), attention_mask, None);
        last_non_pad(self.score.forward(hidden), Some(&input_ids), self.pad_token_id)
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

impl<S: DecoderStack> DecoderForSequenceClassification<S> {
    /// Class logits from what a prompt method prepared: `inputs_embeds` (virtual tokens in
    /// front, pooled at the last position, as transformers pools when it cannot see pad ids)
    /// or `input_ids` (pooled at the last non-pad token), after an already-seen prefix in
    /// `cache` if any.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`; `inputs_embeds`: `[batch, len, hidden_size]`
    /// - `attention_mask`: `[batch, len]` (the new tokens only)
    /// - output: `[batch, num_labels]`
    pub fn forward_prompted(&self, inputs: &ModelInputs, cache: Option<&mut KvCache>) -> Result<Tensor<2>> {
        let hidden = self.transformer.forward_embeds(input_embeds(&self.transformer, inputs)?, inputs.attention_mask.clone(), cache);
        let ids = if inputs.inputs_embeds.is_some() { None } else { inputs.input_ids.as_ref() };
        let pad = if ids.is_some() { self.pad_token_id } else { None };
        Ok(last_non_pad(self.score.forward(hidden), ids, pad))
    }
}

impl<S: DecoderStack> AdapterSites for DecoderForSequenceClassification<S> {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.transformer.visit_sites_prefixed("transformer.", f);
        f("score", SiteMut::Linear(&mut self.score));
    }

    fn default_target_modules(&self) -> Vec<String> {
        S::default_targets()
    }

    fn model_type(&self) -> Option<String> {
        self.transformer.model_type()
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["score".into()]
    }

    fn model_dims(&self) -> Option<peft_core::ModelDims> {
        self.transformer.prompt_dims()
    }
}

/// transformers' `*ForTokenClassification` on a decoder: `classifier(dropout(h))` at every position.
#[derive(Module, Debug)]
pub struct DecoderForTokenClassification<S: DecoderStack> {
    /// The stack, at paths `transformer.*`.
    pub transformer: S,
    /// Dropout before the classifier (training only).
    pub dropout: Dropout,
    /// `hidden_size -> num_labels`.
    pub classifier: AdaptedLinear,
}

impl<S: DecoderStack<Config: HeadConfig>> DecoderForTokenClassification<S> {
    /// A new model for a validated `config` with `config.num_labels` outputs.
    pub fn new(config: &S::Config, device: &Device) -> Self {
        DecoderForTokenClassification {
            transformer: S::build(config, device),
            dropout: DropoutConfig::new(config.classifier_dropout()).init(),
            classifier: linear(config.hidden_size(), config.num_labels(), true, config.initializer_range(), device),
        }
    }

    /// Loads a transformers folder; see [`DecoderForSequenceClassification::from_pretrained`].
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// See [`DecoderForSequenceClassification::from_pretrained_with`].
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        let dir = dir.as_ref();
        load_head(Self::new(&S::Config::read(dir)?, device), dir, new_head)
    }

    /// Loads with a head of `num_labels` outputs (the size of an adapter's saved head): the
    /// folder's head when it has one of that size, else a fresh one.
    pub fn from_pretrained_with_num_labels(dir: impl AsRef<Path>, device: &Device, num_labels: usize) -> Result<Self> {
        load_sized(dir.as_ref(), num_labels, |config: &S::Config| Self::new(config, device))
    }

    /// Per-token class logits.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`
    /// - output: `[batch, len, num_labels]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        let hidden = self.transformer.forward_embeds(self.transformer.embed(input_ids), attention_mask, None);
        self.classifier.forward(self.dropout.forward(hidden))
    }

    /// Logits and the mean cross-entropy against `labels` (`[batch, len]`, -100 ignored).
    pub fn forward_with_loss(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, labels: Tensor<2, Int>) -> (Tensor<3>, Tensor<1>) {
        let logits = self.forward(input_ids, attention_mask);
        (logits.clone(), token_cross_entropy(logits, labels))
    }
}

impl<S: DecoderStack> DecoderForTokenClassification<S> {
    /// Per-position class logits from what a prompt method prepared (virtual positions
    /// included, as transformers returns them), after an already-seen prefix in `cache` if any.
    ///
    /// # Shapes
    /// - output: `[batch, len, num_labels]`, `len` the embeddings' (or ids') length
    pub fn forward_prompted(&self, inputs: &ModelInputs, cache: Option<&mut KvCache>) -> Result<Tensor<3>> {
        let hidden = self.transformer.forward_embeds(input_embeds(&self.transformer, inputs)?, inputs.attention_mask.clone(), cache);
        Ok(self.classifier.forward(self.dropout.forward(hidden)))
    }
}

impl<S: DecoderStack> AdapterSites for DecoderForTokenClassification<S> {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.transformer.visit_sites_prefixed("transformer.", f);
        f("classifier", SiteMut::Linear(&mut self.classifier));
    }

    fn default_target_modules(&self) -> Vec<String> {
        S::default_targets()
    }

    fn model_type(&self) -> Option<String> {
        self.transformer.model_type()
    }

    /// The Python library trains `classifier` / `score` in full for TOKEN_CLS as for SEQ_CLS.
    fn default_modules_to_save(&self, task: TaskType) -> Vec<String> {
        match task {
            TaskType::SeqCls | TaskType::TokenCls => vec!["classifier".into(), "score".into()],
            TaskType::QuestionAns => vec!["qa_outputs".into()],
            _ => Vec::new(),
        }
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["classifier".into()]
    }

    fn model_dims(&self) -> Option<peft_core::ModelDims> {
        self.transformer.prompt_dims()
    }
}

/// transformers' `*ForQuestionAnswering` on a decoder: `qa_outputs` gives a start and an end
/// logit per token.
#[derive(Module, Debug)]
pub struct DecoderForQuestionAnswering<S: DecoderStack> {
    /// The stack, at paths `transformer.*`.
    pub transformer: S,
    /// `hidden_size -> 2` (start, end).
    pub qa_outputs: AdaptedLinear,
}

impl<S: DecoderStack<Config: HeadConfig>> DecoderForQuestionAnswering<S> {
    /// A new model for a validated `config`.
    pub fn new(config: &S::Config, device: &Device) -> Self {
        DecoderForQuestionAnswering {
            transformer: S::build(config, device),
            qa_outputs: linear(config.hidden_size(), 2, true, config.initializer_range(), device),
        }
    }

    /// Loads a transformers folder; see [`DecoderForSequenceClassification::from_pretrained`].
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// See [`DecoderForSequenceClassification::from_pretrained_with`].
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        let dir = dir.as_ref();
        load_head(Self::new(&S::Config::read(dir)?, device), dir, new_head)
    }

    /// `qa_outputs` of every token: `[..., 0]` start, `[..., 1]` end logits.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`
    /// - output: `[batch, len, 2]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.qa_outputs.forward(self.transformer.forward_embeds(self.transformer.embed(input_ids), attention_mask, None))
    }

    /// Start and end logits, `[batch, len]` each.
    pub fn start_end_logits(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> (Tensor<2>, Tensor<2>) {
        let logits = self.forward(input_ids, attention_mask);
        let [batch, len, _] = logits.dims();
        (logits.clone().narrow(2, 0, 1).reshape([batch, len]), logits.narrow(2, 1, 1).reshape([batch, len]))
    }

    /// Start and end logits and transformers' span loss ([`crate::layers::span_cross_entropy`]).
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

impl<S: DecoderStack> DecoderForQuestionAnswering<S> {
    /// Start (`[..., 0]`) and end (`[..., 1]`) logits of every position from what a prompt
    /// method prepared (virtual positions included), after a prefix in `cache` if any.
    ///
    /// # Shapes
    /// - output: `[batch, len, 2]`
    pub fn forward_prompted(&self, inputs: &ModelInputs, cache: Option<&mut KvCache>) -> Result<Tensor<3>> {
        let hidden = self.transformer.forward_embeds(input_embeds(&self.transformer, inputs)?, inputs.attention_mask.clone(), cache);
        Ok(self.qa_outputs.forward(hidden))
    }
}

impl<S: DecoderStack> AdapterSites for DecoderForQuestionAnswering<S> {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.transformer.visit_sites_prefixed("transformer.", f);
        f("qa_outputs", SiteMut::Linear(&mut self.qa_outputs));
    }

    fn default_target_modules(&self) -> Vec<String> {
        S::default_targets()
    }

    fn model_type(&self) -> Option<String> {
        self.transformer.model_type()
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["qa_outputs".into()]
    }

    fn model_dims(&self) -> Option<peft_core::ModelDims> {
        self.transformer.prompt_dims()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn pools_the_last_real_token() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        // logits[b, t, 0] = 10 b + t.
        let values: Vec<f32> = (0..2).flat_map(|b| (0..4).map(move |t| (10 * b + t) as f32)).collect();
        let logits = Tensor::<3>::from_data(TensorData::new(values, [2, 4, 1]), &device);
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![5i64, 6, 0, 0, 0, 5, 6, 7], [2, 4]), &device);
        let pooled = |ids, pad| last_non_pad(logits.clone(), ids, pad).into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(pooled(Some(&ids), Some(0)), vec![1.0, 13.0]);
        assert_eq!(pooled(None, Some(0)), vec![3.0, 13.0]);
    }
}
