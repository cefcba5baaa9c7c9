//! [`TaskModel`] for the decoder-only families on [`DecoderStack`] (GPT-2, BLOOM): every head
//! takes the prompt methods' inputs, `inputs_embeds` (prompt tuning, P-tuning: virtual tokens in
//! front) and `past_key_values` (prefix tuning: keys and values already seen by every layer).
//!
//! What the logits hold follows transformers run by the Python library: the causal LM, token
//! classification, question answering and features keep the virtual positions in front; sequence
//! classification pools the last position when it runs on embeddings (it cannot see pad ids
//! there), else each row's last non-pad token.

use burn::tensor::{Int, Tensor};
use peft_core::generation::{GenerationConfig, Generated};
use peft_core::{Error, InputLimits, Logits, ModelDims, ModelInputs, Result, TaskModel, TaskOutput, TaskType};

use super::task::{LossKind, task_loss};
use crate::bloom::BloomModel;
use crate::causal::{
    DecoderForCausalLm, DecoderForQuestionAnswering, DecoderForSequenceClassification, DecoderForTokenClassification, DecoderLm,
    DecoderStack, input_embeds,
};
use crate::generation::{generate, generate_prompted};
use crate::gpt2::Gpt2Model;

/// The sizes of a stack, or the error for a family that does not give them.
fn stack_dims<S: DecoderStack>(stack: &S) -> Result<ModelDims> {
    stack.prompt_dims().ok_or_else(|| Error::Unsupported {
        what: "model sizes for prompt methods with this decoder".into(),
        supported: "GPT-2, BLOOM and the Llama family".into(),
    })
}

/// The vocabulary and width of a stack's token table, and its position table if it has one.
fn stack_limits<S: DecoderStack>(stack: &S) -> InputLimits {
    let [vocab_size, hidden_size] = stack.embeddings().dims();
    // Token types are refused: GPT-2's Python model would add them through its word
    // embeddings, which this workspace does not do.
    InputLimits {
        vocab_size: Some(vocab_size),
        type_vocab_size: Some(0),
        hidden_size: Some(hidden_size),
        max_positions: stack.max_positions(),
        ..Default::default()
    }
}

/// The loss of `logits` when `inputs` carry labels.
fn loss_of(kind: LossKind, logits: &Logits, inputs: &ModelInputs) -> Result<Option<Tensor<1>>> {
    inputs.labels.as_ref().map(|l| task_loss(kind, logits, l)).transpose()
}

/// The methods every decoder head shares: its task, its embeddings and sizes.
macro_rules! decoder_task_common {
    ($task:expr, $stack:ident) => {
        fn task_type(&self) -> Option<TaskType> {
            $task
        }

        fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
            Ok(self.$stack.embed(input_ids))
        }

        fn dims(&self) -> Result<ModelDims> {
            stack_dims(&self.$stack)
        }

        fn input_limits(&self) -> InputLimits {
            stack_limits(&self.$stack)
        }
    };
}

impl<S: DecoderStack> TaskModel for DecoderForCausalLm<S> {
    decoder_task_common!(Some(TaskType::CausalLm), transformer);

    /// Logits of every position, the virtual ones of prompt tuning / P-tuning included; the
    /// causal LM loss over labels that prompt methods padded with -100 in front.
    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        let embeds = input_embeds(&self.transformer, &inputs)?;
        let mut cache = inputs.past_key_values.clone();
        let logits = Logits::Rank3(self.logits_from_embeds(embeds, inputs.attention_mask.clone(), cache.as_mut()));
        let loss = loss_of(LossKind::Causal, &logits, &inputs)?;
        Ok(TaskOutput { logits, loss })
    }

    fn generate(&self, inputs: ModelInputs, config: &GenerationConfig) -> Result<Generated> {
        if inputs.inputs_embeds.is_some() || inputs.past_key_values.is_some() {
            return generate_prompted(self, inputs, config);
        }
        generate(self, inputs.need_ids()?, inputs.attention_mask.clone(), config)
    }
}

impl<S: DecoderStack> TaskModel for DecoderForSequenceClassification<S> {
    decoder_task_common!(Some(TaskType::SeqCls), transformer);

    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        let mut cache = inputs.past_key_values.clone();
        let logits = Logits::Rank2(self.forward_prompted(&inputs, cache.as_mut())?);
        let loss = loss_of(LossKind::Sequence, &logits, &inputs)?;
        Ok(TaskOutput { logits, loss })
    }
}

impl<S: DecoderStack> TaskModel for DecoderForTokenClassification<S> {
    decoder_task_common!(Some(TaskType::TokenCls), transformer);

    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        let mut cache = inputs.past_key_values.clone();
        let logits = Logits::Rank3(self.forward_prompted(&inputs, cache.as_mut())?);
        let loss = loss_of(LossKind::Token, &logits, &inputs)?;
        Ok(TaskOutput { logits, loss })
    }
}

impl<S: DecoderStack> TaskModel for DecoderForQuestionAnswering<S> {
    decoder_task_common!(Some(TaskType::QuestionAns), transformer);

    fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        let mut cache = inputs.past_key_values.clone();
        let logits = Logits::Rank3(self.forward_prompted(&inputs, cache.as_mut())?);
        let loss = loss_of(LossKind::Span, &logits, &inputs)?;
        Ok(TaskOutput { logits, loss })
    }
}

/// The bare stacks: the last hidden state of every position (virtual ones included).
macro_rules! stack_task_models {
    ($($ty:ty),*) => {$(
        impl TaskModel for $ty {
            fn task_type(&self) -> Option<TaskType> {
                Some(TaskType::FeatureExtraction)
            }

            fn forward_task(&self, inputs: ModelInputs) -> Result<TaskOutput> {
                let embeds = input_embeds(self, &inputs)?;
                let mut cache = inputs.past_key_values.clone();
                let logits = Logits::Rank3(DecoderStack::forward_embeds(self, embeds, inputs.attention_mask.clone(), cache.as_mut()));
                let loss = loss_of(LossKind::None, &logits, &inputs)?;
                Ok(TaskOutput { logits, loss })
            }

            fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
                Ok(DecoderStack::embed(self, input_ids))
            }

            fn dims(&self) -> Result<ModelDims> {
                stack_dims(self)
            }

            fn input_limits(&self) -> InputLimits {
                stack_limits(self)
            }
        }
    )*};
}

stack_task_models!(Gpt2Model, BloomModel);
