//! T5 and mT5 — `t5`, `mt5` — from transformers' `config.json` and safetensors, with every
//! linear layer and embedding an adapter site named by its transformers module path
//! (`shared`, `encoder.block.0.layer.0.SelfAttention.q`, `decoder.block.0.layer.1.EncDecAttention.v`,
//! `decoder.block.1.layer.2.DenseReluDense.wo`, `lm_head`).
//!
//! The architecture: an encoder and a decoder of pre-norm blocks with T5 LayerNorm (RMS, no
//! mean, no bias), attention without `1/sqrt(d)` scaling plus a learned relative position bias
//! (bucketed; bidirectional in the encoder, causal in the decoder; held by block 0 and shared by
//! the others), decoder cross-attention to the encoder output, and a feed-forward network that is
//! `relu` (T5 v1.0) or gated GELU (T5 v1.1, mT5). T5 v1.0 ties `lm_head` to `shared` and rescales
//! the decoder output by `d_model^-0.5`; mT5 checkpoints hold their own `lm_head`.
//!
//! ```no_run
//! use burn::tensor::{Device, Int, Tensor, TensorData};
//! use peft_models::t5::T5ForConditionalGeneration;
//!
//! # fn main() -> peft_core::Result<()> {
//! let device = Device::default();
//! let model = T5ForConditionalGeneration::from_pretrained("models/t5-small", &device)?;
//! let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![13959i64, 1566, 12, 2968, 10, 1], [1, 6]), &device);
//! let new_tokens = model.generate_greedy(ids, None, 20); // decoder tokens, without the start token
//! # let _ = new_tokens;
//! # Ok(())
//! # }
//! ```

mod attention;
mod block;
mod conditional;
mod config;
mod encoder_model;
mod heads;
mod load;
mod position;
mod qa;
mod stack;

pub use attention::T5Attention;
pub use block::{T5Block, T5DenseReluDense, T5SubLayer};
pub use conditional::T5ForConditionalGeneration;
pub use crate::layers::{seq2seq_lm_loss, shift_right};
pub use config::{FfActivation, SUPPORTED_MODEL_TYPES, T5Config};
pub use encoder_model::T5EncoderModel;
pub use heads::{T5ClassificationHead, T5ForSequenceClassification, T5ForTokenClassification};
pub use qa::T5ForQuestionAnswering;
pub use position::relative_position_bucket;
pub use stack::{T5Cache, T5Stack};

use crate::layers::{embedding, linear};

/// The module paths Python's LoRA targets by default for `t5` and `mt5`.
const DEFAULT_TARGETS: [&str; 2] = ["q", "v"];



/// `DEFAULT_TARGETS` as the `AdapterSites` hook returns them.
fn default_targets() -> Vec<String> {
    DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect()
}
