//! Dispatch from a config to the method crate that implements it.
//!
//! The only place that names the method crates: each built-in method is one arm here, behind its
//! feature. A config of a method this build lacks fails with the crate and feature that add it.

use peft_core::adapted::Erased;
use peft_core::attach::SiteMethod;
use peft_core::{AdapterSites, Error, ModelAdapter, PeftConfig, PeftType, Result};

use crate::tensors::TensorMap;

/// The last step of attaching adapter `name` once every check passed: PiSSA and OLoRA move part of
/// each base weight into the adapter (`fresh`: the adapter was not loaded from a file, so its
/// factors start from that part). Nothing changes on error.
pub(crate) fn finish_attach<M: AdapterSites>(config: &PeftConfig, model: &mut M, name: &str, fresh: bool) -> Result<()> {
    let _ = (&model, name, fresh);
    match config {
        #[cfg(feature = "lora")]
        PeftConfig::Lora(c) => peft_lora::decompose_bases(model, name, c, fresh),
        _ => Ok(()),
    }
}

/// The site part of the built-in method `config` names, for `model` (LLaMA-Adapter picks the
/// model's top layers).
pub(crate) fn site_method<'a, M: AdapterSites>(config: &'a PeftConfig, model: &M) -> Result<Box<dyn SiteMethod + 'a>> {
    let _ = model;
    match config {
        #[cfg(feature = "lora")]
        PeftConfig::Lora(c) => Ok(Box::new(peft_lora::LoraMethod::new(c)?)),
        #[cfg(feature = "lora")]
        PeftConfig::AdaLora(c) => Ok(Box::new(peft_lora::AdaLoraMethod::new(c)?)),
        #[cfg(feature = "ia3")]
        PeftConfig::Ia3(c) => Ok(Box::new(peft_ia3::Ia3Method::new(c)?)),
        #[cfg(feature = "prompt")]
        PeftConfig::AdaptionPrompt(c) => {
            let device = model.devices().into_iter().next().unwrap_or_default();
            let hidden = model.model_dims().map(|d| d.hidden_size);
            Ok(Box::new(peft_prompt::AdaptionPromptMethod::new(c, &model.site_paths(), hidden, &device)?))
        }
        PeftConfig::Custom(c) => Err(Error::Unsupported {
            what: format!("`peft_type` {:?}: no method of that name is built in", c.peft_type),
            supported: "LORA, ADALORA, IA3, PROMPT_TUNING, P_TUNING, PREFIX_TUNING, ADAPTION_PROMPT; for a method of your own, use PeftModel::add_adapter_with_method / load_adapter_with_method".into(),
        }),
        #[allow(unreachable_patterns)]
        other => Err(other.peft_type().map_or_else(|| Error::InvalidState("a config without a method".into()), missing_method)),
    }
}

/// Fills what the method takes from the model when the config leaves it unset, as the Python
/// library does before saving the config: LoRA's per-architecture default `target_modules`,
/// IA3's `target_modules` and `feedforward_modules` (keyed by the model's `model_type`).
pub(crate) fn complete_config<M: AdapterSites>(config: &mut PeftConfig, model: &M) -> Result<()> {
    crate::legacy::upgrade_targets(config, model);
    #[cfg(feature = "prompt")]
    peft_prompt::complete_config(config, model.model_dims())?;
    #[cfg(feature = "prompt")]
    if let PeftConfig::AdaptionPrompt(c) = config
        && c.target_modules.is_none()
    {
        // Python writes the architecture's attention module name into the saved config.
        c.target_modules = peft_prompt::default_target(&model.site_paths());
    }
    #[cfg(feature = "ia3")]
    if let PeftConfig::Ia3(ia3) = config {
        return ia3.complete_for(model.model_type().as_deref());
    }
    let (targets, own_defaults) = match config {
        PeftConfig::Lora(lora) => (&mut lora.target_modules, None),
        // The Python library's AdaLoRA defaults equal LoRA's for the architectures built here
        // except RoBERTa and T5, where it also adapts the key and feed-forward layers.
        PeftConfig::AdaLora(adalora) => (&mut adalora.target_modules, model.model_type().as_deref().and_then(adalora_targets)),
        _ => return Ok(()),
    };
    if !targets.is_none() {
        return Ok(());
    }
    let defaults = match own_defaults {
        Some(names) => names.iter().map(|n| n.to_string()).collect(),
        None => model.default_target_modules(),
    };
    if defaults.is_empty() {
        return Err(Error::config(
            "target_modules",
            "null (this architecture has no default)",
            "name the layers to adapt, e.g. [\"q_proj\", \"v_proj\"], or \"all-linear\"",
        ));
    }
    *targets = peft_core::TargetModules::Names(defaults);
    Ok(())
}

/// AdaLoRA's default `target_modules` where the Python library's table
/// (`TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING`) differs from LoRA's.
fn adalora_targets(model_type: &str) -> Option<&'static [&'static str]> {
    match model_type {
        "t5" => Some(&["q", "k", "v", "o", "wi", "wo"]),
        "mt5" => Some(&["q", "k", "v", "o", "wi_0", "wi_1", "wo"]),
        "roberta" => Some(&["query", "key", "value", "dense"]),
        _ => None,
    }
}

/// The model-level adapter of a prompt-learning config (from the file's `prompt_embeddings` when
/// loading), or `None` for methods that adapt sites.
pub(crate) fn model_adapter<M: AdapterSites>(config: &PeftConfig, model: &M, tensors: Option<&TensorMap>) -> Result<Option<Erased<dyn ModelAdapter>>> {
    #[cfg(feature = "prompt")]
    if matches!(config, PeftConfig::PromptTuning(_) | PeftConfig::PTuning(_) | PeftConfig::PrefixTuning(_)) {
        let device = model.devices().into_iter().next().unwrap_or_default();
        // The file's other tensors (a task head's copy) are the caller's to place and check.
        let saved = match tensors {
            // TEXT / SAMPLE_VOCAB start from the model's word embeddings, as if loaded.
            None => crate::prompt_init::initial_table(config, model)?,
            Some(t) => {
                let key = peft_prompt::PROMPT_EMBEDDINGS;
                Some(t.get(key).cloned().ok_or_else(|| Error::MissingTensor {
                    key: key.into(),
                    file: peft_io::adapter::WEIGHTS_FILE.into(),
                    fix: "the folder is not a complete prompt-learning adapter; save it again".into(),
                })?)
            }
        };
        return peft_prompt::build(config, saved, &device);
    }
    let _ = (config, model, tensors);
    Ok(None)
}

/// The crate and the `peft` feature that implement a method.
pub(crate) fn method_home(method: PeftType) -> (&'static str, &'static str) {
    match method {
        PeftType::Lora | PeftType::AdaLora => ("peft-lora", "lora"),
        PeftType::Ia3 => ("peft-ia3", "ia3"),
        PeftType::PromptTuning | PeftType::PTuning | PeftType::PrefixTuning | PeftType::AdaptionPrompt => ("peft-prompt", "prompt"),
    }
}

/// The methods this build has.
fn built_methods() -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg!(feature = "lora") {
        out.extend(["LORA", "ADALORA"]);
    }
    if cfg!(feature = "ia3") {
        out.push("IA3");
    }
    if cfg!(feature = "prompt") {
        out.extend(["PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "ADAPTION_PROMPT"]);
    }
    out
}

/// The error for a method this build does not have: the crate and feature that add it, or that
/// it is not implemented yet.
pub(crate) fn missing_method(method: PeftType) -> Error {
    let (krate, feature) = method_home(method);
    let built = built_methods();
    // Features of this version of the `peft` crate, and whether each is on.
    let feature_state = match feature {
        "lora" => Some(cfg!(feature = "lora")),
        "ia3" => Some(cfg!(feature = "ia3")),
        "prompt" => Some(cfg!(feature = "prompt")),
        _ => None,
    };
    let built = if built.is_empty() { "no method".to_string() } else { built.join(", ") };
    // Reads as "`peft_type` IA3 is not supported; supported: LORA in this build; ...".
    let supported = match feature_state {
        Some(false) => format!("{built} in this build; enable the `{feature}` feature of the `peft` crate (crate `{krate}`) to add {method}"),
        _ => format!("{built} in this build; {method} is not implemented yet (it is planned in crate `{krate}`, feature `{feature}` of `peft`)"),
    };
    Error::Unsupported { what: format!("`peft_type` {method}"), supported }
}
