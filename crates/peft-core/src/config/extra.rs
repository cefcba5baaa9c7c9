//! Keys of `adapter_config.json` that this crate keeps without interpreting.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// Keys the Python library writes that switch on a feature this crate lacks when set.
const FEATURE_KEYS: &[&str] = &[
    "alora_invocation_tokens",
    "arrow_config",
    "kasa_config",
    "layer_replication",
    "lora_bias",
    "megatron_config",
    "monteclora_config",
    "target_parameters",
    "trainable_token_indices",
    "use_bdlora",
    "use_qalora",
    "velora_config",
];

/// Whether a key's value switches its feature on (anything but `null`, `false`, `[]` or `{}`).
pub(crate) fn is_on(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Keys kept from `adapter_config.json` and written back unchanged, in file order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExtraKeys(pub IndexMap<String, Value>);

impl ExtraKeys {
    /// Keys that neither this crate nor the Python library (as listed in `known`) defines.
    pub fn unknown<'a>(&'a self, known: &[&str]) -> Vec<&'a str> {
        self.0.keys().map(String::as_str).filter(|k| !known.contains(k)).collect()
    }

    /// Fails when a Python-only feature is switched on, naming the key.
    pub(crate) fn reject_enabled(&self, known: &[&str]) -> Result<()> {
        for (key, value) in &self.0 {
            if is_on(value) && FEATURE_KEYS.contains(&key.as_str()) && known.contains(&key.as_str()) {
                return Err(Error::Unsupported {
                    what: format!("`{key}` = {value}"),
                    supported: format!("`{key}` left at null/false"),
                });
            }
        }
        Ok(())
    }

    /// Logs one warning listing the unknown keys, if any.
    pub(crate) fn warn_unknown(&self, known: &[&str], file: &std::path::Path) {
        let unknown = self.unknown(known);
        if !unknown.is_empty() {
            log::warn!(
                "{}: ignoring keys this version of peft does not know: {} (they are kept when saving)",
                file.display(),
                unknown.join(", ")
            );
        }
    }
}
