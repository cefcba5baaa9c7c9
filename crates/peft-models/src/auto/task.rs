//! [`TaskModel`] for every family and head, and for [`AutoModel`]: one forward (with the task's
//! loss) and one generate, which `PeftModel::forward` / `PeftModel::generate` drive.

use burn::tensor::{Int, Tensor};
use peft_core::generation::{GenerationConfig, Generated};
use peft_core::{Error, InputLimits, Labels, Logits, ModelDims, ModelInputs, Result, TaskModel, TaskOutput, TaskType};

use super::model::{AutoModel, on_model};
use crate::bert::cross_entropy;
use crate::llama::LlamaForCausalLM;
use crate::segformer::{SegformerForImageClassification, SegformerForSemanticSegmentation, SegformerModel};
use crate::t5::{T5EncoderModel, T5ForConditionalGeneration, T5ForQuestionAnswering, T5ForSequenceClassification, T5ForTokenClassification};
use crate::vit::{ViTForImageClassification, ViTModel};
use crate::whisper::{WhisperForConditionalGeneration, WhisperModel};
use crate::generation::{generate, generate_seq2seq, generate_seq2seq_after};
use crate::gpt2::{span_cross_entropy, token_cross_entropy};
use crate::layers::causal_lm_loss;
use crate::t5::seq2seq_lm_loss;

/// How a head's loss is computed from its logits and labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LossKind {
    /// Position `t` predicts `labels[t + 1]`.
    Causal,
    /// One class per row.
    Sequence,
    /// One class per token.
    Token,
    /// Start and end of an answer span.
    Span,
    /// Decoder position `t` predicts `labels[t]` (the decoder inputs are the labels shifted right).
    Seq2Seq,
    /// No loss (features).
    None,
}

/// Implements [`TaskModel`] for a family type: its task, its logits from the inputs, and the
/// task's loss from those logits (see [`task_loss`]).
macro_rules! task_model {
    ($ty:ty, $task:expr, $loss:expr, |$m:ident, $i:ident| $logits:expr) => {
        // No token type table: token types are refused rather than ignored.
        task_model!($ty, $task, $loss, limits |_model| InputLimits { type_vocab_size: Some(0), ..Default::default() }, |$m, $i| $logits);
    };
    ($ty:ty, $task:expr, $loss:expr, limits |$s:ident| $limits:expr, |$m:ident, $i:ident| $logits:expr) => {
        impl TaskModel for $ty {
            fn task_type(&self) -> Option<TaskType> {
                $task
            }

            fn input_limits(&self) -> InputLimits {
                let $s = self;
                $limits
            }

            fn forward_task(&self, $i: ModelInputs) -> Result<TaskOutput> {
                refuse_prompt_inputs(&$i, stringify!($ty))?;
                let $m = self;
                let logits: Logits = $logits;
                let loss = match &$i.labels {
                    None => None,
                    Some(labels) => Some(task_loss($loss, &logits, labels)?),
                };
                Ok(TaskOutput { logits, loss })
            }
        }
    };
}

/// Token models: `input_ids` with the padding mask, logits of rank `$rank`.
macro_rules! token_task_models {
    ($($ty:ty, |$s:ident| $config:expr => $task:expr, $loss:expr, $rank:ident;)*) => {
        $(task_model!($ty, $task, $loss, limits |$s| t5_limits($config), |m, inputs| Logits::$rank(m.forward(inputs.need_ids()?, inputs.attention_mask.clone())));)*
    };
}

token_task_models! {
    T5ForTokenClassification, |m| &m.transformer.config => Some(TaskType::TokenCls), LossKind::Token, Rank3;
}

impl TaskModel for T5EncoderModel {
    fn task_type(&self) -> Option<TaskType> {
        Some(TaskType::FeatureExtraction)
    }

    /// Takes `inputs_embeds` (prompt tuning, P-tuning), as transformers' `T5EncoderModel` does;
    /// refuses `past_key_values`, which it has no parameter for.
    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        if inputs.past_key_values.is_some() {
            return Err(Error::Unsupported {
                what: "`past_key_values` (prefix tuning) with T5EncoderModel, which transformers' encoder does not take".into(),
                supported: "prompt tuning and P-tuning on the T5 encoder; prefix tuning on T5ForConditionalGeneration".into(),
            });
        }
        let mask = inputs.attention_mask.clone();
        let hidden = match &inputs.inputs_embeds {
            Some(embeds) => self.forward_embeds(embeds.clone(), mask),
            None => self.forward(inputs.need_ids()?, mask),
        };
        let logits = Logits::Rank3(hidden);
        let loss = inputs.labels.as_ref().map(|l| task_loss(LossKind::None, &logits, l)).transpose()?;
        Ok(TaskOutput { logits, loss })
    }

    fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        Ok(self.embed(input_ids))
    }

    fn input_limits(&self) -> InputLimits {
        t5_limits(&self.config)
    }

    /// The encoder's sizes, one submodule (the Python library's count for a task other than
    /// seq2seq).
    fn dims(&self) -> Result<ModelDims> {
        let c = &self.config;
        Ok(ModelDims {
            hidden_size: c.d_model,
            num_layers: c.num_layers,
            num_attention_heads: c.num_heads,
            num_key_value_heads: c.num_heads,
            head_dim: c.d_kv,
            vocab_size: c.vocab_size,
            num_transformer_submodules: 1,
        })
    }
}

/// T5 takes ids of its vocabulary; relative positions have no table.
fn t5_limits(config: &crate::t5::T5Config) -> InputLimits {
    InputLimits { vocab_size: Some(config.vocab_size), type_vocab_size: Some(0), hidden_size: Some(config.d_model), ..Default::default() }
}

task_model!(T5ForSequenceClassification, Some(TaskType::SeqCls), LossKind::Sequence, limits |m| t5_limits(&m.config), |m, inputs| Logits::Rank2(
    m.forward(inputs.need_ids()?, inputs.attention_mask.clone())?
));
task_model!(T5ForQuestionAnswering, Some(TaskType::QuestionAns), LossKind::Span, limits |m| t5_limits(&m.config), |m, inputs| {
    let (start, end) = m.forward(inputs.need_ids()?, inputs.attention_mask.clone());
    Logits::Rank3(Tensor::stack(vec![start, end], 2))
});
task_model!(WhisperModel, Some(TaskType::FeatureExtraction), LossKind::None, |m, inputs| Logits::Rank3(m.forward(
    inputs.need_features()?,
    inputs.need_decoder_ids()?,
    None
)?));
task_model!(ViTModel, Some(TaskType::FeatureExtraction), LossKind::None, |m, inputs| Logits::Rank3(m.forward(inputs.need_pixels()?)?));
task_model!(ViTForImageClassification, None, LossKind::Sequence, |m, inputs| Logits::Rank2(m.forward(inputs.need_pixels()?)?));
task_model!(SegformerModel, Some(TaskType::FeatureExtraction), LossKind::None, |m, inputs| Logits::Rank4(
    m.last_hidden_state(inputs.need_pixels()?)
));
task_model!(SegformerForImageClassification, None, LossKind::Sequence, |m, inputs| Logits::Rank2(m.forward(inputs.need_pixels()?)));

impl TaskModel for SegformerForSemanticSegmentation {
    fn task_type(&self) -> Option<TaskType> {
        None
    }

    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        refuse_prompt_inputs(&inputs, "SegformerForSemanticSegmentation")?;
        let pixels = inputs.need_pixels()?;
        match &inputs.labels {
            None => Ok(TaskOutput { logits: Logits::Rank4(self.forward(pixels)), loss: None }),
            Some(Labels::Pixels(labels)) => {
                let (logits, loss) = self.forward_with_loss(pixels, labels.clone())?;
                Ok(TaskOutput { logits: Logits::Rank4(logits), loss: Some(loss) })
            }
            Some(other) => Err(wrong_labels(other, "Pixels")),
        }
    }
}

impl TaskModel for T5ForConditionalGeneration {
    fn task_type(&self) -> Option<TaskType> {
        Some(TaskType::Seq2SeqLm)
    }

    /// Takes `inputs_embeds` for the encoder (prompt tuning, P-tuning) and `past_key_values`
    /// as the decoder's self-attention prefix (prefix tuning); the decoder reads
    /// `decoder_input_ids`, else the labels shifted right.
    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        let logits = Logits::Rank3(self.forward_inputs(&inputs)?);
        let loss = inputs.labels.as_ref().map(|l| task_loss(LossKind::Seq2Seq, &logits, l)).transpose()?;
        Ok(TaskOutput { logits, loss })
    }

    fn generate(&self, inputs: ModelInputs, config: &GenerationConfig) -> Result<Generated> {
        let encoder = self.encode_inputs(&inputs)?;
        match inputs.past_key_values {
            None => generate_seq2seq(self, &encoder, config),
            Some(prefix) => generate_seq2seq_after(self, &encoder, self.prefix_cache(prefix)?, config),
        }
    }

    fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        Ok(self.embed(input_ids))
    }

    fn input_limits(&self) -> InputLimits {
        t5_limits(self.config())
    }

    /// `d_model`, the encoder's `num_layers`, `num_heads` and `d_kv`, two submodules (encoder
    /// and decoder), as the Python library reads them.
    fn dims(&self) -> Result<ModelDims> {
        let c = self.config();
        Ok(ModelDims {
            hidden_size: c.d_model,
            num_layers: c.num_layers,
            num_attention_heads: c.num_heads,
            num_key_value_heads: c.num_heads,
            head_dim: c.d_kv,
            vocab_size: c.vocab_size,
            num_transformer_submodules: 2,
        })
    }
}

impl TaskModel for WhisperForConditionalGeneration {
    fn task_type(&self) -> Option<TaskType> {
        Some(TaskType::Seq2SeqLm)
    }

    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        refuse_prompt_inputs(&inputs, "WhisperForConditionalGeneration")?;
        let features = inputs.need_features()?;
        match &inputs.labels {
            Some(Labels::Tokens(labels)) => {
                let (logits, loss) = self.forward_with_loss(features, inputs.decoder_input_ids.clone(), labels.clone())?;
                Ok(TaskOutput { logits: Logits::Rank3(logits), loss: Some(loss) })
            }
            Some(other) => Err(wrong_labels(other, "Tokens")),
            None => Ok(TaskOutput { logits: Logits::Rank3(self.forward(features, inputs.need_decoder_ids()?)?), loss: None }),
        }
    }

    /// Decoder ids of the vocabulary; the decoder's position table (the encoder checks the
    /// features itself).
    fn input_limits(&self) -> InputLimits {
        let c = self.config();
        InputLimits {
            decoder_vocab_size: Some(c.vocab_size),
            decoder_max_positions: Some(c.max_target_positions),
            type_vocab_size: Some(0),
            ..Default::default()
        }
    }

    fn generate(&self, inputs: ModelInputs, config: &GenerationConfig) -> Result<Generated> {
        refuse_prompt_inputs(&inputs, "WhisperForConditionalGeneration")?;
        generate_seq2seq(self, &self.encode(inputs.need_features()?)?, config)
    }
}

impl TaskModel for LlamaForCausalLM {
    fn task_type(&self) -> Option<TaskType> {
        Some(TaskType::CausalLm)
    }

    /// Takes `input_ids` or `inputs_embeds`, and `past_key_values` as an already-seen prefix.
    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        let embeds = match &inputs.inputs_embeds {
            Some(e) => e.clone(),
            None => self.model.embed(inputs.need_ids()?),
        };
        let mut cache = inputs.past_key_values.clone();
        let logits = Logits::Rank3(self.forward_embeds(embeds, inputs.attention_mask.clone(), cache.as_mut()));
        let loss = inputs.labels.as_ref().map(|l| task_loss(LossKind::Causal, &logits, l)).transpose()?;
        Ok(TaskOutput { logits, loss })
    }

    fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        Ok(self.model.embed(input_ids))
    }

    /// Rotary positions have no table; transformers runs past `max_position_embeddings` too.
    fn input_limits(&self) -> InputLimits {
        let c = self.config();
        InputLimits { vocab_size: Some(c.vocab_size), type_vocab_size: Some(0), hidden_size: Some(c.hidden_size), ..Default::default() }
    }

    fn dims(&self) -> Result<ModelDims> {
        let c = self.config();
        Ok(ModelDims {
            hidden_size: c.hidden_size,
            num_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            num_key_value_heads: c.num_key_value_heads(),
            head_dim: c.head_dim(),
            vocab_size: c.vocab_size,
            num_transformer_submodules: 1,
        })
    }

    fn generate(&self, inputs: ModelInputs, config: &GenerationConfig) -> Result<Generated> {
        if inputs.inputs_embeds.is_some() || inputs.past_key_values.is_some() {
            return crate::generation::generate_prompted(self, inputs, config);
        }
        generate(self, inputs.need_ids()?, inputs.attention_mask.clone(), config)
    }
}

/// Refuses the prompt methods' inputs where a family has no path for them yet.
fn refuse_prompt_inputs(inputs: &ModelInputs, model: &str) -> Result<()> {
    let input = if inputs.inputs_embeds.is_some() {
        "inputs_embeds"
    } else if inputs.past_key_values.is_some() {
        "past_key_values"
    } else {
        return Ok(());
    };
    Err(Error::Unsupported {
        what: format!("`{input}` (a prompt method) with {model}"),
        supported: "prompt methods on the causal LMs, BERT / RoBERTa, T5 seq2seq and the T5 encoder (docs/prompt-tuning.md has the table)".into(),
    })
}

impl TaskModel for AutoModel {
    fn task_type(&self) -> Option<TaskType> {
        on_model!(self, m => TaskModel::task_type(m))
    }

    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        on_model!(self, m => TaskModel::forward_task(m, inputs))
    }

    fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        on_model!(self, m => TaskModel::embed_tokens(m, input_ids))
    }

    fn dims(&self) -> Result<ModelDims> {
        on_model!(self, m => TaskModel::dims(m))
    }

    fn input_limits(&self) -> InputLimits {
        on_model!(self, m => TaskModel::input_limits(m))
    }

    fn generate(&self, inputs: ModelInputs, config: &GenerationConfig) -> Result<Generated> {
        on_model!(self, m => TaskModel::generate(m, inputs, config))
    }
}

fn wrong_labels(labels: &Labels, wanted: &str) -> Error {
    Error::InvalidState(format!("this head takes {wanted} labels, not {}", labels_kind(labels)))
}

/// The task's loss from the head's logits and the labels, as transformers computes it.
pub(super) fn task_loss(kind: LossKind, logits: &Logits, labels: &Labels) -> Result<Tensor<1>> {
    match (kind, logits, labels) {
        (LossKind::Causal, Logits::Rank3(l), Labels::Tokens(t)) => Ok(causal_lm_loss(l.clone(), t.clone())),
        (LossKind::Seq2Seq, Logits::Rank3(l), Labels::Tokens(t)) => Ok(seq2seq_lm_loss(l.clone(), t.clone())),
        (LossKind::Sequence, Logits::Rank2(l), Labels::Sequence(t)) => Ok(cross_entropy(l.clone(), t.clone())),
        (LossKind::Token, Logits::Rank3(l), Labels::Tokens(t)) => Ok(token_cross_entropy(l.clone(), t.clone())),
        (LossKind::Span, Logits::Rank3(l), Labels::Spans { start, end }) => {
            let [batch, len, _] = l.dims();
            let start_logits = l.clone().slice([0..batch, 0..len, 0..1]).reshape([batch, len]);
            let end_logits = l.clone().slice([0..batch, 0..len, 1..2]).reshape([batch, len]);
            Ok(span_cross_entropy(start_logits, end_logits, start.clone(), end.clone()))
        }
        (LossKind::None, _, _) => Err(Error::Unsupported { what: "labels for a feature-extraction model".into(), supported: "labels with a task head".into() }),
        (kind, logits, labels) => Err(Error::InvalidState(format!(
            "labels of kind {} do not fit this head ({kind:?} loss on logits of shape {:?})",
            labels_kind(labels),
            logits.dims()
        ))),
    }
}

fn labels_kind(labels: &Labels) -> &'static str {
    match labels {
        Labels::Sequence(_) => "Sequence",
        Labels::Tokens(_) => "Tokens",
        Labels::Spans { .. } => "Spans",
        Labels::Pixels(_) => "Pixels",
    }
}
