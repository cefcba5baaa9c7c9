//! `AdaptionPromptConfig`: the adaption-prompt (LLaMA-Adapter) section of `adapter_config.json`.

use serde::{Deserialize, Serialize};

use super::common::CommonConfig;
use super::extra::ExtraKeys;
use crate::{Error, Result};

/// The configuration of adaption prompts, as the Python library's `AdaptionPromptConfig`:
/// learned prompts with a zero-initialised gate in the attention of the top `adapter_layers` layers.
///
/// Unlike the other methods it has no `modules_to_save`: the Python class does not take one, so
/// it must stay `None` (and is not written).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdaptionPromptConfig {
    /// The attention submodule's name (one name, not a list: `"self_attn"` for Llama, `"attn"` for
    /// GPT-2); `None` is filled from the architecture when attaching.
    pub target_modules: Option<String>,
    /// Prompt tokens per adapted layer (`> 0`; required).
    pub adapter_len: Option<usize>,
    /// How many layers, counted from the top, get a prompt (`> 0`; required).
    pub adapter_layers: Option<usize>,
    /// The fields every method shares (`task_type`, ...).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Keys of `adapter_config.json` this crate does not interpret, kept for writing back.
    /// (After `common`: serde offers each flattened field the keys the ones before it left.)
    #[serde(flatten)]
    pub extra: ExtraKeys,
}

crate::impl_method_config!(AdaptionPromptConfig, AdaptionPrompt, PYTHON_ADAPTION_PROMPT_KEYS);

/// Keys the Python library writes for adaption prompts that this crate ignores.
pub(crate) const PYTHON_ADAPTION_PROMPT_KEYS: &[&str] = &["auto_mapping", "peft_version"];

impl AdaptionPromptConfig {
    /// Prompts of `adapter_len` tokens in the top `adapter_layers` layers; the attention module's
    /// name comes from the architecture.
    pub fn new(adapter_len: usize, adapter_layers: usize) -> Self {
        AdaptionPromptConfig { adapter_len: Some(adapter_len), adapter_layers: Some(adapter_layers), ..Default::default() }
    }

    /// Sets `target_modules`, the attention submodule's name.
    pub fn with_target_modules(mut self, name: impl Into<String>) -> Self {
        self.target_modules = Some(name.into());
        self
    }
    /// Sets `adapter_len`.
    pub fn with_adapter_len(mut self, len: usize) -> Self {
        self.adapter_len = Some(len);
        self
    }
    /// Sets `adapter_layers`.
    pub fn with_adapter_layers(mut self, layers: usize) -> Self {
        self.adapter_layers = Some(layers);
        self
    }

    /// Checks every field a user can get wrong; each error names the field and the fix.
    pub fn validate(&self) -> Result<()> {
        // Python has no default for these two and fails deep inside the model without them.
        let sizes = [
            ("adapter_len", self.adapter_len, "prompt tokens per layer (10 is usual)"),
            ("adapter_layers", self.adapter_layers, "how many top layers get a prompt (e.g. 30 of Llama-7B's 32)"),
        ];
        for (field, value, what) in sizes {
            if value.is_none_or(|v| v == 0) {
                let shown = value.map_or_else(|| "null".to_string(), |v| v.to_string());
                return Err(Error::config(field, shown, format!("set a positive number: {what}")));
            }
        }
        if self.target_modules.as_deref() == Some("") {
            return Err(Error::config("target_modules", "\"\"", "name the attention submodule (\"self_attn\"), or null for the architecture's"));
        }
        if let Some(modules) = &self.common.modules_to_save {
            return Err(Error::config(
                "modules_to_save",
                format!("{modules:?}"),
                "adaption prompts train only their prompts and gates; remove modules_to_save",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_required() {
        let e = AdaptionPromptConfig::default().validate().expect_err("no length");
        assert!(matches!(e, Error::InvalidConfig { field: "adapter_len", .. }), "{e:?}");
        let e = AdaptionPromptConfig::new(10, 0).validate().expect_err("no layers");
        assert!(matches!(e, Error::InvalidConfig { field: "adapter_layers", .. }), "{e:?}");
        AdaptionPromptConfig::new(10, 2).validate().expect("valid");
        let e = AdaptionPromptConfig::new(10, 2).with_modules_to_save(["lm_head"]).validate().expect_err("no modules_to_save");
        assert!(e.to_string().contains("`modules_to_save`"), "{e}");
    }

    #[test]
    fn target_modules_is_one_name() {
        let c: AdaptionPromptConfig = serde_json::from_str(r#"{"target_modules": "attn", "adapter_len": 4, "adapter_layers": 1}"#).expect("parses");
        assert_eq!(c.target_modules.as_deref(), Some("attn"));
        assert!(serde_json::from_str::<AdaptionPromptConfig>(r#"{"target_modules": ["attn"]}"#).is_err(), "a list is not Python's type");
    }
}
