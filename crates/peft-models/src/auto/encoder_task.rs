//! [`TaskModel`] for BERT and RoBERTa: every head takes prompt tuning's and P-tuning's
//! `inputs_embeds` (virtual tokens in front, at the first positions, token type 0); the bare
//! encoder also takes prefix tuning's `past_key_values`.
//!
//! As transformers run by the Python library returns them: token classification, question
//! answering and features keep the virtual positions in front; sequence classification pools the
//! first position, which is then the first virtual token (BERT's pooler, RoBERTa's head).
//! Python 0.21.2 refuses prefix tuning on these heads under transformers 5 (it looks for a
//! `past_key_values` argument the heads renamed `cache`), so the heads refuse it too.

use burn::tensor::{Int, Tensor};
use peft_core::{Error, InputLimits, Logits, ModelDims, ModelInputs, Result, TaskModel, TaskOutput, TaskType};

use super::task::{LossKind, task_loss};
use crate::bert::{
    BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification, BertModel, RobertaForQuestionAnswering,
    RobertaForSequenceClassification, RobertaForTokenClassification,
};

/// The sizes of an encoder, or the error for one without layers.
fn encoder_dims(model: &BertModel) -> Result<ModelDims> {
    model.prompt_dims().ok_or_else(|| Error::InvalidState("a BERT model without layers has no sizes for prompt methods".into()))
}

/// The error for prefix tuning on a head.
fn no_prefix(model: &str) -> Error {
    Error::Unsupported {
        what: format!("prefix tuning (`past_key_values`) with {model}"),
        supported: "prompt tuning and P-tuning on this head; prefix tuning on BertModel / RobertaModel (feature extraction), as the Python library 0.21.2 serves it".into(),
    }
}

/// Implements [`TaskModel`] for a head whose encoder is field `$base`: ids or embeddings in,
/// `$rank` logits out, `$loss` with labels.
macro_rules! encoder_task_models {
    ($($ty:ty, $base:ident => $task:expr, $loss:expr, $rank:ident;)*) => {$(
        impl TaskModel for $ty {
            fn task_type(&self) -> Option<TaskType> {
                Some($task)
            }

            fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
                if inputs.past_key_values.is_some() {
                    return Err(no_prefix(stringify!($ty)));
                }
                let (mask, types) = (inputs.attention_mask.clone(), inputs.token_type_ids.clone());
                let logits = Logits::$rank(match &inputs.inputs_embeds {
                    Some(embeds) => self.forward_embeds(embeds.clone(), mask, types),
                    None => self.forward(inputs.need_ids()?, mask, types),
                });
                let loss = inputs.labels.as_ref().map(|l| task_loss($loss, &logits, l)).transpose()?;
                Ok(TaskOutput { logits, loss })
            }

            fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
                Ok(self.$base.embed_tokens(input_ids))
            }

            fn dims(&self) -> Result<ModelDims> {
                encoder_dims(&self.$base)
            }

            fn input_limits(&self) -> InputLimits {
                self.$base.input_limits()
            }
        }
    )*};
}

encoder_task_models! {
    BertForSequenceClassification, bert => TaskType::SeqCls, LossKind::Sequence, Rank2;
    RobertaForSequenceClassification, roberta => TaskType::SeqCls, LossKind::Sequence, Rank2;
    BertForTokenClassification, bert => TaskType::TokenCls, LossKind::Token, Rank3;
    RobertaForTokenClassification, roberta => TaskType::TokenCls, LossKind::Token, Rank3;
    BertForQuestionAnswering, bert => TaskType::QuestionAns, LossKind::Span, Rank3;
    RobertaForQuestionAnswering, roberta => TaskType::QuestionAns, LossKind::Span, Rank3;
}

impl TaskModel for BertModel {
    fn task_type(&self) -> Option<TaskType> {
        Some(TaskType::FeatureExtraction)
    }

    /// The last hidden state: of every position with `inputs_embeds` (virtual ones included);
    /// of the real tokens after a prefix in `past_key_values`.
    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        let (mask, types) = (inputs.attention_mask.clone(), inputs.token_type_ids.clone());
        let hidden = match (&inputs.inputs_embeds, &inputs.past_key_values) {
            (Some(_), Some(_)) => {
                return Err(Error::Unsupported {
                    what: "`inputs_embeds` together with `past_key_values` on BertModel".into(),
                    supported: "one prompt method at a time".into(),
                });
            }
            (Some(embeds), None) => self.forward_embeds(embeds.clone(), mask, types),
            (None, Some(prefix)) => self.forward_with_prefix(inputs.need_ids()?, mask, types, prefix),
            (None, None) => self.forward(inputs.need_ids()?, mask, types),
        };
        let logits = Logits::Rank3(hidden);
        let loss = inputs.labels.as_ref().map(|l| task_loss(LossKind::None, &logits, l)).transpose()?;
        Ok(TaskOutput { logits, loss })
    }

    fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        Ok(BertModel::embed_tokens(self, input_ids))
    }

    fn dims(&self) -> Result<ModelDims> {
        encoder_dims(self)
    }

    fn input_limits(&self) -> InputLimits {
        BertModel::input_limits(self)
    }
}
