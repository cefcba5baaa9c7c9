#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod adapted;
pub mod attach;
pub mod backend;
pub mod cache;
mod config;
mod dropout;
mod error;
pub mod generation;
pub mod input_check;
mod site;
mod site_visit;
mod task;
mod task_model;
pub mod targets;

pub use adapted::{
    AdaptedBatchNorm2d, AdaptedConv1d, AttentionAdapter, AttentionHook, AttentionInputs, AttentionProjections, BatchNormAdapter, AdaptedConv2d, AdaptedEmbedding, AdaptedLinear, AdapterSet, Conv1dAdapter, Conv2dAdapter,
    EmbeddingAdapter, LinearAdapter, LowRank, ModelAdapter, PrepareContext, BASE_ONLY,
};
pub use config::{
    AdaLoraConfig, AdaptionPromptConfig, Bias, CONFIG_FILE, CommonConfig, CustomConfig, ExtraKeys, Ia3Config, InitLoraWeights, LoraConfig,
    MethodConfig, PeftConfig, PrefixTuningConfig, PrefixTuningInit, PromptEncoderConfig, PromptEncoderReparameterizationType,
    PromptLearningFields, PromptTuningConfig, PromptTuningInit,
};
pub use backend::Backend;
pub use dropout::{dropout, dropout_active};
pub use error::{Error, Result};
pub use site::{AdapterSites, SiteKind, SiteMut, covering_module, module_covers};
pub use site_visit::{SiteVisit, join_path, site_paths_under};
pub use targets::{LayerIndices, LayersPattern, TargetModules};
pub use task::{PeftType, TaskType};
pub use input_check::InputLimits;
pub use task_model::{Labels, Logits, ModelDims, ModelInputs, TaskModel, TaskOutput};

/// Burn, re-exported so macros expanded in other crates name the same version.
#[doc(hidden)]
pub use burn;
