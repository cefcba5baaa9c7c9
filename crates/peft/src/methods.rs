//! Dispatch from a config to the method crate that implements it.

use peft_core::{AdapterSites, PeftConfig, Result};

use crate::tensors::TensorMap;

/// What attaching a method did.
pub(crate) struct Injection {
    /// Sites that received the method's adapter.
    pub targeted: Vec<String>,
    /// File keys the method used.
    pub consumed: Vec<String>,
}

/// Attaches the adapter `config` describes to `model` under `name`.
pub(crate) fn inject_method<M: AdapterSites>(
    model: &mut M,
    config: &PeftConfig,
    name: &str,
    tensors: Option<&TensorMap>,
) -> Result<Injection> {
    match config {
        #[cfg(feature = "lora")]
        PeftConfig::Lora(c) => {
            let done = peft_lora::inject(model, c, name, tensors)?;
            Ok(Injection { targeted: done.targeted, consumed: done.consumed })
        }
        #[cfg(not(feature = "lora"))]
        PeftConfig::Lora(_) => {
            let _ = (model, name, tensors);
            Err(peft_core::Error::Unsupported {
                what: "LoRA in this build".into(),
                supported: "the methods enabled as features of the `peft` crate (add feature `lora`)".into(),
            })
        }
    }
}
