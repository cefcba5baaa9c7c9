//! # peft
//!
//! Parameter-efficient fine-tuning for [Burn](https://burn.dev), with the workflow and the files of
//! Hugging Face's Python PEFT library: a config, [`get_peft_model`], train, [`PeftModel::save_pretrained`],
//! [`PeftModel::from_pretrained`], merge.
//!
//! Methods are features (`lora`); architectures come with `models`; backends are features too
//! (`flex`, the default CPU backend; `cuda`, `wgpu`, `vulkan`, `metal`, `cpu`, `tch`).
#![deny(missing_docs)]

#[cfg(feature = "models")]
mod auto;
mod bias;
#[cfg(feature = "lora")]
mod combine;
pub mod device;
mod files;
mod grads;
mod merge;
mod methods;
mod model;
mod saved;
mod tensors;
mod trainable;

#[cfg(feature = "models")]
pub use auto::resolve_base;
pub use model::{AdapterRegistry, PeftModel, get_peft_model};
pub use peft_core::{
    AdapterSites, Bias, Error, InitLoraWeights, LoraConfig, PeftConfig, PeftType, Result, TargetModules, TaskType,
    BASE_ONLY,
};
pub use trainable::thousands;
#[cfg(feature = "lora")]
pub use peft_lora::Combination;

/// The shared ground: configs, adapter sites, target matching.
pub use peft_core as core;
/// Adapter files and model weights.
pub use peft_io as io;
/// LoRA.
#[cfg(feature = "lora")]
pub use peft_lora as lora;
/// Architectures.
#[cfg(feature = "models")]
pub use peft_models as models;
/// Burn, as this crate uses it.
pub use burn;

/// The guide's pages (`docs/`), compiled and run as doc tests so their examples stay true.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../../../docs/installation.md")]
    mod installation {}
    #[doc = include_str!("../../../docs/lora.md")]
    mod lora {}
    #[doc = include_str!("../../../docs/interop.md")]
    mod interop {}
    #[doc = include_str!("../../../docs/cli.md")]
    mod cli {}
}
