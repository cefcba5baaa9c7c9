//! Adapter sites: the layers of a model that adapters attach to, and the traits methods implement.

mod attention;
mod batch_norm;
mod conv;
mod embedding;
mod erased;
mod linear;
mod linear_merge;
mod mixed;
mod model_level;
pub mod packed;
pub mod precision;
mod saved;
mod set;

pub use attention::{AttentionAdapter, AttentionHook, AttentionInputs, AttentionProjections};
pub use batch_norm::{AdaptedBatchNorm2d, BatchNorm2d, BatchNormAdapter, SavedBatchNorm2d};
pub use conv::{AdaptedConv1d, AdaptedConv2d, Conv1dAdapter, Conv2dAdapter};
pub use embedding::{AdaptedEmbedding, EmbeddingAdapter};
pub use erased::{AdapterObject, Erased, Upcast};
pub use linear::{AdaptedLinear, LinearAdapter, LowRank};
pub use linear_merge::replace as replace_param;
pub use model_level::{ModelAdapter, PrepareContext};
pub use saved::{SavedConv2d, SavedEmbedding, SavedLinear};
pub use set::{AdapterSet, BASE_ONLY, MixedBatch, ParamIds, RowAdapters, check_name};
