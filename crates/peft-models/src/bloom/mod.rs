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
mod causal_lm;
mod config;
mod heads;
mod model;

pub use attention::{BloomAttention, alibi_slopes};
pub use causal_lm::BloomForCausalLM;
pub use config::{BloomConfig, SUPPORTED_MODEL_TYPES};
pub use heads::{BloomForQuestionAnswering, BloomForSequenceClassification, BloomForTokenClassification};
pub use model::{BloomBlock, BloomMlp, BloomModel};

// GPT-2 and BLOOM checkpoints share their layout conventions (`transformer.` prefix, tied head).
use crate::gpt2::{linear, load, tie};

/// Python's default LoRA targets for BLOOM.
fn default_target_modules() -> Vec<String> {
    vec!["query_key_value".into()]
}
