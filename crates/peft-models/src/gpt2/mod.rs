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
mod causal_lm;
mod config;
mod heads;
pub(crate) mod mask;
mod model;
pub(crate) mod pooling;

pub use attention::Gpt2Attention;
pub use causal_lm::Gpt2LMHeadModel;
pub use config::{Gpt2Config, SUPPORTED_MODEL_TYPES};
pub use heads::{Gpt2ForQuestionAnswering, Gpt2ForSequenceClassification, Gpt2ForTokenClassification};
pub use model::{Gpt2Block, Gpt2Mlp, Gpt2Model};
pub use pooling::{span_cross_entropy, token_cross_entropy};

use burn::module::Param;
use burn::nn::{EmbeddingConfig, Initializer, LinearConfig};
use burn::tensor::{Device, Tensor};
use peft_core::{AdaptedEmbedding, AdaptedLinear, AdapterSites, Result};
use peft_io::weights::{LoadOptions, load_from_dir};
use std::path::Path;

/// A GPT-2 `Conv1D`: a linear layer with bias whose checkpoint weight is `[in, out]`.
fn conv1d(d_input: usize, d_output: usize, std: f64, device: &Device) -> AdaptedLinear {
    linear(d_input, d_output, true, std, device).with_fan_in_fan_out(true)
}

/// A linear layer with weights drawn from `N(0, std)` as transformers does.
pub(crate) fn linear(d_input: usize, d_output: usize, bias: bool, std: f64, device: &Device) -> AdaptedLinear {
    let init = Initializer::Normal { mean: 0.0, std };
    AdaptedLinear::from_linear(LinearConfig::new(d_input, d_output).with_bias(bias).with_initializer(init).init(device))
}

/// An embedding table drawn from `N(0, std)`.
pub(crate) fn embedding(rows: usize, d_model: usize, std: f64, device: &Device) -> AdaptedEmbedding {
    let init = Initializer::Normal { mean: 0.0, std };
    AdaptedEmbedding::from_embedding(EmbeddingConfig::new(rows, d_model).with_initializer(init).init(device))
}

/// Python's default LoRA targets for GPT-2.
fn default_target_modules() -> Vec<String> {
    vec!["c_attn".into()]
}

/// Loads a GPT-2 or BLOOM checkpoint: keys may carry the task models' `transformer.` prefix or
/// not; `optional` keys may be absent (a tied `lm_head`, a new head).
pub(crate) fn load<M: AdapterSites>(model: M, dir: &Path, optional: Vec<String>) -> Result<M> {
    load_from_dir(model, dir, &LoadOptions { prefixes: vec!["transformer.".into()], optional })
}

/// The weight and bias keys of `heads` (for a new head that the file may lack).
pub(crate) fn head_keys(heads: &[String]) -> Vec<String> {
    heads.iter().flat_map(|p| [format!("{p}.weight"), format!("{p}.bias")]).collect()
}

/// Sets `lm_head`'s weight to a copy of the embedding table, keeping its id and `require_grad`:
/// adapters can target either, and a full fine-tune of one does not move the other.
pub(crate) fn tie(mut lm_head: AdaptedLinear, table: &AdaptedEmbedding) -> AdaptedLinear {
    let weight = lm_head.base_layer.weight;
    let device = weight.lazy_device();
    // Embedding `[vocab, hidden]` is Burn linear `[hidden, vocab]`; copied, not shared.
    let data = table.base_layer.weight.val().detach().transpose().into_data();
    let id = weight.id;
    lm_head.base_layer.weight = Param::transform_for_load(weight, Tensor::from_data(data, &device), id);
    lm_head
}
