//! GPT-2 (`model_type` `gpt2`) from transformers' `config.json` and safetensors, with its task
//! heads, every Conv1D / linear layer and both embeddings an adapter site named by its
//! transformers module path (`transformer.h.0.attn.c_attn`, `lm_head`, `score`).
//!
//! GPT-2's `Conv1D` stores its weight `[in, out]`, Burn's own layout, so `c_attn`, `c_proj` and
//! `c_fc` load without a transpose and are marked `fan_in_fan_out`: LoRA files the Python library
//! wrote for them (with `fan_in_fan_out=True`) load, merge and save in their own layout.
//!
//! ```no_run
//! use burn::tensor::{Device, Int, Tensor, TensorData};
//! use peft_models::gpt2::Gpt2LMHeadModel;
//!
//! # fn main() -> peft_core::Result<()> {
//! let device = Device::default();
//! let model = Gpt2LMHeadModel::from_pretrained("models/gpt2", &device)?;
//! let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![464i64, 3290, 318], [1, 3]), &device);
//! let logits = model.forward(ids.clone(), None); // [1, 3, vocab_size]
//! let new_tokens = model.generate_greedy(ids, 20, model.config().eos_token_ids().first().copied());
//! # let _ = (logits, new_tokens);
//! # Ok(())
//! # }
//! ```

mod attention;
mod config;
mod model;

pub use attention::Gpt2Attention;
pub use config::{Gpt2Config, SUPPORTED_MODEL_TYPES};
pub use model::{Gpt2Block, Gpt2Mlp, Gpt2Model};
// Kept at their old paths: the losses moved to `layers` when other families started using them.
pub use crate::layers::{span_cross_entropy, token_cross_entropy};

use burn::tensor::Device;
use peft_core::AdaptedLinear;

use crate::causal::{DecoderForCausalLm, DecoderForQuestionAnswering, DecoderForSequenceClassification, DecoderForTokenClassification};

/// transformers' `GPT2LMHeadModel`: [`Gpt2Model`] at `transformer.*` and a tied `lm_head`.
pub type Gpt2LMHeadModel = DecoderForCausalLm<Gpt2Model>;
/// transformers' `GPT2ForSequenceClassification`: `score` pooled at each row's last non-pad token.
pub type Gpt2ForSequenceClassification = DecoderForSequenceClassification<Gpt2Model>;
/// transformers' `GPT2ForTokenClassification`: `classifier(dropout(h))` at every position.
pub type Gpt2ForTokenClassification = DecoderForTokenClassification<Gpt2Model>;
/// transformers' `GPT2ForQuestionAnswering`: `qa_outputs` start and end logits per token.
pub type Gpt2ForQuestionAnswering = DecoderForQuestionAnswering<Gpt2Model>;

/// A GPT-2 `Conv1D`: a linear layer with bias whose checkpoint weight is `[in, out]`.
fn conv1d(d_input: usize, d_output: usize, std: f64, device: &Device) -> AdaptedLinear {
    crate::layers::linear(d_input, d_output, true, std, device).with_fan_in_fan_out(true)
}
