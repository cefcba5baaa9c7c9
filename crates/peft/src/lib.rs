//! # peft
//!
//! Parameter-efficient fine-tuning for [Burn](https://burn.dev), with the workflow and the files of
//! Hugging Face's Python PEFT library: a config, [`get_peft_model`], train, [`PeftModel::save_pretrained`],
//! [`PeftModel::from_pretrained`], merge.
//!
//! Methods are features (`lora`, `ia3`, `prompt`); architectures come with `models`; backends are features too
//! (`flex`, the default CPU backend; `cuda`, `wgpu`, `vulkan`, `metal`, `cpu`, `tch`).
//! `#[derive(AdapterSites)]` (feature `derive`, on by default) makes a Burn module of your own
//! adaptable: see the guide's page on custom models.
#![deny(missing_docs)]

#[cfg(feature = "lora")]
mod adalora;
#[cfg(feature = "models")]
mod auto;
mod bias;
#[cfg(feature = "lora")]
mod combine;
#[cfg(feature = "ia3")]
mod combine_ia3;
mod convert;
pub mod device;
mod files;
mod forward;
mod grads;
mod legacy;
mod merge;
mod methods;
mod model;
#[cfg(feature = "prompt")]
mod prompt_init;
mod saved;
mod tensors;
mod trainable;

#[cfg(feature = "models")]
pub use auto::{base_for_adapter, resolve_base, resolve_base_with_hub, saved_head_size};
#[cfg(feature = "lora")]
pub use adalora::Allocation;
pub use model::{AdapterRegistry, PeftModel, get_peft_model, get_peft_model_with_method};
pub use peft_core::generation::{GenerationConfig, Generated};
pub use peft_core::{
    AdaLoraConfig, AdaptionPromptConfig, AdapterSites, Bias, CommonConfig, CustomConfig, Error, Ia3Config, InitLoraWeights, Labels,
    Logits, LoraConfig, ModelInputs, PeftConfig, PeftType, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, Result,
    TargetModules, TaskModel, TaskOutput, TaskType, BASE_ONLY,
};
pub use trainable::thousands;
/// `#[derive(AdapterSites)]`: the trait of the same name, implemented from the struct's fields
/// (crate `peft-derive`). The trait and the derive share the name, as serde's do.
#[cfg(feature = "derive")]
pub use peft_derive::AdapterSites;
#[cfg(feature = "lora")]
pub use peft_lora::Combination;

/// The shared ground: configs, adapter sites, target matching.
pub use peft_core as core;
/// Adapter files and model weights.
pub use peft_io as io;
/// LoRA.
#[cfg(feature = "lora")]
pub use peft_lora as lora;
/// (IA)³ (crate `peft-ia3`).
#[cfg(feature = "ia3")]
pub use peft_ia3 as ia3;
/// Architectures.
#[cfg(feature = "models")]
pub use peft_models as models;
/// Prompt tuning, P-tuning and prefix tuning (crate `peft-prompt`).
#[cfg(feature = "prompt")]
pub use peft_prompt as prompt;
/// Burn, as this crate uses it.
pub use burn;

/// The guide's pages (`docs/`), compiled and run as doc tests so their examples stay true.
/// `tests/integration/docs.rs` checks that every page of `docs/` is listed here.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../../../docs/README.md")]
    mod readme {}
    // Not a page of `docs/`: peft-derive's README, whose example cannot run in its own crate.
    #[doc = include_str!("../../peft-derive/README.md")]
    mod derive_readme {}
    #[doc = include_str!("../../../docs/SUMMARY.md")]
    mod summary {}
    #[doc = include_str!("../../../docs/installation.md")]
    mod installation {}
    #[doc = include_str!("../../../docs/architectures.md")]
    mod architectures {}
    #[doc = include_str!("../../../docs/custom-models.md")]
    mod custom_models {}
    #[doc = include_str!("../../../docs/lora.md")]
    mod lora {}
    #[doc = include_str!("../../../docs/adalora.md")]
    mod adalora {}
    #[doc = include_str!("../../../docs/ia3.md")]
    mod ia3 {}
    #[doc = include_str!("../../../docs/prompt-tuning.md")]
    mod prompt_tuning {}
    #[doc = include_str!("../../../docs/p-tuning.md")]
    mod p_tuning {}
    #[doc = include_str!("../../../docs/prefix-tuning.md")]
    mod prefix_tuning {}
    #[doc = include_str!("../../../docs/llama-adapter.md")]
    mod llama_adapter {}
    #[doc = include_str!("../../../docs/interop.md")]
    mod interop {}
    #[doc = include_str!("../../../docs/from-python.md")]
    mod from_python {}
    #[doc = include_str!("../../../docs/cli.md")]
    mod cli {}
    #[doc = include_str!("../../../docs/performance.md")]
    mod performance {}
    #[doc = include_str!("../../../docs/half-precision.md")]
    mod half_precision {}
    #[doc = include_str!("../../../docs/qlora.md")]
    mod qlora {}
    #[doc = include_str!("../../../docs/limits.md")]
    mod limits {}
    #[doc = include_str!("../../../docs/errors.md")]
    mod errors {}
    #[doc = include_str!("../../../docs/fuzzing.md")]
    mod fuzzing {}
    #[doc = include_str!("../../../docs/adding-a-method.md")]
    mod adding_a_method {}
}
