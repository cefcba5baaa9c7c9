//! Picking the architecture and the head from a model folder, like transformers' `Auto*` classes
//! and the Python library's `AutoPeftModel*`.
//!
//! `config.json`'s `model_type` names the family; the head comes from the caller (an adapter's
//! `task_type`), else from `architectures` (`BertForSequenceClassification`), else the family's
//! natural one (causal LM for decoders, seq2seq LM for encoder-decoders, features for encoders).
//!
//! ```no_run
//! use peft_models::auto::{AutoInputs, AutoModel, Head};
//! # fn demo(device: &burn::tensor::Device, ids: burn::tensor::Tensor<2, burn::tensor::Int>) -> peft_core::Result<()> {
//! let model = AutoModel::from_pretrained("models/gpt2", Some(Head::CausalLm), device)?;
//! let logits = model.forward(&AutoInputs::ids(ids))?;
//! # let _ = logits;
//! # Ok(())
//! # }
//! ```

mod decoder_task;
mod encoder_task;
mod head;
mod inputs;
mod model;
mod task;

pub use head::{Head, ModelInfo, SUPPORTED};
pub use inputs::{AutoInputs, AutoOutput};
pub use model::AutoModel;
