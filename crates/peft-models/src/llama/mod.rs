//! The Llama family — `llama`, `mistral`, `qwen2` — from transformers' `config.json` and
//! safetensors, with every linear layer and the embedding an adapter site named by its
//! transformers module path (`model.layers.0.self_attn.q_proj`, `lm_head`).
//!
//! The three differ only in their config: grouped-query attention (`num_key_value_heads`), RoPE
//! (`rope_theta`, `linear` / `llama3` scaling in `rope_parameters` or the older `rope_scaling`),
//! biases (Qwen2: `q/k/v_proj`; Llama: `attention_bias`, `mlp_bias`), tied embeddings and
//! Mistral's / Qwen2's sliding window (applied in the attention mask as transformers does,
//! `q - k < sliding_window`).
//!
//! ```no_run
//! use burn::tensor::{Device, Int, Tensor, TensorData};
//! use peft_models::llama::LlamaForCausalLM;
//!
//! # fn main() -> peft_core::Result<()> {
//! let device = Device::default();
//! let model = LlamaForCausalLM::from_pretrained("models/SmolLM2-135M", &device)?;
//! let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 504, 3458], [1, 3]), &device);
//! let logits = model.forward(ids.clone(), None); // [1, 3, vocab_size]
//! let new_tokens = model.generate_greedy(ids, 20, model.config().eos_token_ids().first().copied());
//! # let _ = (logits, new_tokens);
//! # Ok(())
//! # }
//! ```

mod attention;
mod causal_lm;
mod config;
mod gguf;
mod model;

pub use attention::LlamaAttention;
pub use crate::cache::{KvCache, LayerKv};
pub use causal_lm::LlamaForCausalLM;
pub use crate::config_file::TokenIds;
pub use config::{LlamaConfig, SUPPORTED_MODEL_TYPES};
pub use gguf::gguf_tensor_key;
pub use model::{LlamaDecoderLayer, LlamaMlp, LlamaModel};
