//! BERT and RoBERTa encoders with transformers' module paths, and their classification heads.
//!
//! Every linear layer is a [`peft_core::AdaptedLinear`] and every embedding table a
//! [`peft_core::AdaptedEmbedding`], listed by [`peft_core::AdapterSites`] under the paths of
//! transformers' `named_modules()` (`bert.encoder.layer.0.attention.self.query`), so
//! `target_modules` such as `["query", "value"]` and adapter files from the Python library apply.
//!
//! ```no_run
//! use burn::tensor::{Device, Int, Tensor, TensorData};
//! use peft_models::bert::BertForSequenceClassification;
//!
//! # fn main() -> peft_core::Result<()> {
//! let device = Device::default();
//! let model = BertForSequenceClassification::from_pretrained("models/bert-tiny-sst2", &device)?;
//! let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![101i64, 2023, 102], [1, 3]), &device);
//! let logits = model.forward(ids, None, None); // [1, num_labels]
//! # let _ = logits;
//! # Ok(())
//! # }
//! ```

// Fields are named `LayerNorm` as transformers names the modules, so keys match with no rename;
// Burn's derive binds locals by field name, hence the allow on the whole module.
#[allow(non_snake_case)]
mod attention;
mod config;
#[allow(non_snake_case)]
mod embeddings;
mod encoder;
mod heads;
mod load;
mod model;
mod token_heads;

pub use attention::{BertAttention, BertSelfAttention, BertSelfOutput};
pub use config::{BertConfig, ModelType};
pub use embeddings::BertEmbeddings;
pub use encoder::{BertEncoder, BertIntermediate, BertLayer, BertOutput};
pub use token_heads::{BertForQuestionAnswering, BertForTokenClassification, RobertaForQuestionAnswering, RobertaForTokenClassification};
pub use heads::{BertForSequenceClassification, RobertaClassificationHead, RobertaForSequenceClassification};
// Kept at their old paths: they moved to `layers` when other families started using them.
pub use crate::layers::{HiddenAct, IGNORE_INDEX, LayerNorm, cross_entropy};
pub use model::{BertModel, BertPooler, RobertaModel};

use burn::tensor::Device;
use peft_core::{AdaptedEmbedding, AdaptedLinear};

/// A linear layer with bias, weights drawn from `N(0, initializer_range)` as transformers does.
fn linear(d_input: usize, d_output: usize, config: &BertConfig, device: &Device) -> AdaptedLinear {
    crate::layers::linear(d_input, d_output, true, config.initializer_range, device)
}

/// An embedding table drawn from `N(0, initializer_range)`.
fn embedding(rows: usize, d_model: usize, config: &BertConfig, device: &Device) -> AdaptedEmbedding {
    crate::layers::embedding(rows, d_model, config.initializer_range, device)
}
