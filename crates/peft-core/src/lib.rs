#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod adapted;
mod config;
mod dropout;
mod error;
mod site;
mod site_visit;
mod task;
pub mod targets;

pub use adapted::{
    AdaptedBatchNorm2d, AdaptedConv1d, AdaptedConv2d, AdaptedEmbedding, AdaptedLinear, AdapterSet, Conv1dAdapter, Conv2dAdapter,
    EmbeddingAdapter, LinearAdapter, LowRank, BASE_ONLY,
};
pub use config::{Bias, CONFIG_FILE, ExtraKeys, InitLoraWeights, LoraConfig, PeftConfig};
pub use dropout::dropout;
pub use error::{Error, Result};
pub use site::{AdapterSites, SiteKind, SiteMut, covering_module, module_covers};
pub use site_visit::{SiteVisit, join_path, site_paths_under};
pub use targets::{LayerIndices, LayersPattern, TargetModules};
pub use task::{PeftType, TaskType};

/// Burn, re-exported so macros expanded in other crates name the same version.
#[doc(hidden)]
pub use burn;
