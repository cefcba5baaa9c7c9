//! BLOOM (`model_type` `bloom`) from transformers' `config.json` and safetensors, with its task
//! heads, every linear layer and the word embeddings an adapter site named by its transformers
//! module path (`transformer.h.0.self_attention.query_key_value`, `lm_head`, `score`).
//!
//! BLOOM has no position embeddings: ALiBi adds `slope_h * position` to the attention scores,
//! positions counted over real (unpadded) keys as transformers does. Queries, keys and values come
//! from one fused `query_key_value` layer whose output is interleaved per head.
//!
//! ```no_run
//! use burn::tensor::{Device, Int, Tensor, TensorData};
//! use peft_models::bloom::BloomForCausalLM;
//!
//! # fn main() -> peft_core::Result<()> {
//! let device = Device::default();
//! let model = BloomForCausalLM::from_pretrained("models/bloom-560m", &device)?;
//! let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![59414i64, 15, 2670], [1, 3]), &device);
//! let logits = model.forward(ids.clone(), None); // [1, 3, vocab_size]
//! let new_tokens = model.generate_greedy(ids, 20, model.config().eos_token_ids().first().copied());
//! # let _ = (logits, new_tokens);
//! # Ok(())
//! # }
//! ```

mod attention;
mod config;
mod model;

pub use attention::{BloomAttention, alibi_slopes};
pub use config::{BloomConfig, SUPPORTED_MODEL_TYPES};
pub use model::{BloomBlock, BloomMlp, BloomModel};

use crate::causal::{DecoderForCausalLm, DecoderForQuestionAnswering, DecoderForSequenceClassification, DecoderForTokenClassification};

/// transformers' `BloomForCausalLM`: [`BloomModel`] at `transformer.*` and a tied `lm_head`.
pub type BloomForCausalLM = DecoderForCausalLm<BloomModel>;
/// transformers' `BloomForSequenceClassification`: `score` pooled at each row's last non-pad token.
pub type BloomForSequenceClassification = DecoderForSequenceClassification<BloomModel>;
/// transformers' `BloomForTokenClassification`: `classifier(dropout(h))` at every position.
pub type BloomForTokenClassification = DecoderForTokenClassification<BloomModel>;
/// transformers' `BloomForQuestionAnswering`: `qa_outputs` start and end logits per token.
pub type BloomForQuestionAnswering = DecoderForQuestionAnswering<BloomModel>;
