//! Adapter sites: the layers of a model that adapters attach to, and the traits methods implement.

mod batch_norm;
mod conv;
mod embedding;
mod erased;
mod linear;
mod linear_merge;
mod mixed;
mod saved;
mod set;

pub use batch_norm::{AdaptedBatchNorm2d, BatchNorm2d, BatchNormAdapter, SavedBatchNorm2d};
pub use conv::{AdaptedConv1d, AdaptedConv2d, Conv1dAdapter, Conv2dAdapter};
pub use embedding::{AdaptedEmbedding, EmbeddingAdapter};
pub use erased::{DynMapper, DynToMapper, DynToVisitor, DynVisitor, ErasedModule, MapperToDyn, ParamBox, ParamRef, VisitorToDyn};
pub use linear::{AdaptedLinear, LinearAdapter, LowRank};
pub use saved::{SavedConv2d, SavedEmbedding, SavedLinear};
pub use set::{AdapterSet, BASE_ONLY, MixedBatch, RowAdapters, check_name};
