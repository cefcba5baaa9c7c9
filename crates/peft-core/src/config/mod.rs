//! Adapter configs and `adapter_config.json`.

mod extra;
mod lora;

pub use extra::ExtraKeys;
pub use lora::{Bias, InitLoraWeights, LoraConfig};

use serde_json::Value;
use std::path::Path;

use crate::{Error, PeftType, Result};

/// The name of an adapter's config file.
pub const CONFIG_FILE: &str = "adapter_config.json";

/// Any adapter config, tagged by `peft_type` as in `adapter_config.json`.
///
/// Method crates add their configs here as they land; a file for a method this build does not
/// know fails with [`Error::Unsupported`] naming the method.
#[derive(Clone, Debug, PartialEq)]
pub enum PeftConfig {
    /// `"peft_type": "LORA"`.
    Lora(LoraConfig),
}

impl PeftConfig {
    /// The method of this config.
    pub fn peft_type(&self) -> PeftType {
        match self {
            PeftConfig::Lora(_) => PeftType::Lora,
        }
    }

    /// The `bias` mode (methods without one train no bias).
    pub fn bias(&self) -> Bias {
        match self {
            PeftConfig::Lora(c) => c.bias,
        }
    }

    /// Whether the adapter is for inference only.
    pub fn inference_mode(&self) -> bool {
        match self {
            PeftConfig::Lora(c) => c.inference_mode,
        }
    }

    /// Sets `inference_mode`.
    pub fn set_inference_mode(&mut self, yes: bool) {
        match self {
            PeftConfig::Lora(c) => c.inference_mode = yes,
        }
    }

    /// The task type, if set.
    pub fn task_type(&self) -> Option<crate::TaskType> {
        match self {
            PeftConfig::Lora(c) => c.task_type,
        }
    }

    /// `base_model_name_or_path`: the Hub name or folder of the base model, if recorded.
    pub fn base_model_name_or_path(&self) -> Option<&str> {
        match self {
            PeftConfig::Lora(c) => c.base_model_name_or_path.as_deref(),
        }
    }

    /// `modules_to_save`, to read or extend.
    pub fn modules_to_save_mut(&mut self) -> &mut Option<Vec<String>> {
        match self {
            PeftConfig::Lora(c) => &mut c.modules_to_save,
        }
    }

    /// `modules_to_save` (empty when unset).
    pub fn modules_to_save(&self) -> Vec<String> {
        match self {
            PeftConfig::Lora(c) => c.modules_to_save.clone().unwrap_or_default(),
        }
    }

    /// Parses the JSON of `adapter_config.json`; `file` names the source in errors and warnings.
    pub fn from_json_str(json: &str, file: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(json).map_err(|source| Error::Json { path: file.into(), source })?;
        let peft_type = value.get("peft_type").and_then(Value::as_str).unwrap_or("LORA").to_string();
        let parsed: PeftType = serde_json::from_value(Value::String(peft_type.clone())).map_err(|_| Error::Format {
            path: file.into(),
            format: "adapter_config.json",
            message: format!("unknown peft_type {peft_type:?}"),
        })?;
        let mut object = value;
        if let Some(map) = object.as_object_mut() {
            map.remove("peft_type");
        }
        match parsed {
            PeftType::Lora => {
                let config: LoraConfig =
                    serde_json::from_value(object).map_err(|source| Error::Json { path: file.into(), source })?;
                config.extra.warn_unknown(lora::PYTHON_LORA_KEYS, file);
                config.validate()?;
                Ok(PeftConfig::Lora(config))
            }
            other => Err(Error::Unsupported {
                what: format!("{} adapters (in {})", other, file.display()),
                supported: "LORA".into(),
            }),
        }
    }

    /// Reads `dir/adapter_config.json`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                "cannot open adapter folder",
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder (pass the folder that holds adapter_config.json)"),
            ));
        }
        let file = dir.join(CONFIG_FILE);
        let json = std::fs::read_to_string(&file).map_err(|e| Error::io("cannot read", &file, e))?;
        Self::from_json_str(&json, &file)
    }

    /// The JSON the Python library writes: sorted keys, two-space indent, `peft_type` included.
    pub fn to_json_string(&self) -> String {
        let mut value = match self {
            PeftConfig::Lora(c) => serde_json::to_value(c),
        }
        .unwrap_or(Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.insert("peft_type".into(), Value::String(self.peft_type().as_str().into()));
            map.sort_keys();
        }
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }

    /// The LoRA config, or [`Error::WrongMethod`] for another method.
    pub fn into_lora(self, file: &Path) -> Result<LoraConfig> {
        match self {
            PeftConfig::Lora(c) => Ok(c),
            #[allow(unreachable_patterns)]
            other => Err(Error::WrongMethod { expected: "LORA".into(), found: other.peft_type().to_string(), path: file.into() }),
        }
    }
}

impl From<LoraConfig> for PeftConfig {
    fn from(c: LoraConfig) -> Self {
        PeftConfig::Lora(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn python_file_round_trips_and_keeps_unknown_keys() {
        let json = r#"{
          "alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": "tiny-llama",
          "bias": "none", "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
          "layers_pattern": null, "layers_to_transform": null, "lora_alpha": 16, "lora_dropout": 0.05,
          "megatron_core": "megatron.core", "modules_to_save": null, "peft_type": "LORA", "r": 8,
          "rank_pattern": {}, "revision": null, "target_modules": ["v_proj", "q_proj"],
          "task_type": "CAUSAL_LM", "use_dora": false, "use_rslora": false, "something_new": 3
        }"#;
        let config = PeftConfig::from_json_str(json, Path::new("adapter_config.json")).expect("parses");
        let PeftConfig::Lora(lora) = &config;
        assert_eq!(lora.target_modules.names(), ["q_proj".to_string(), "v_proj".to_string()]);
        assert_eq!(lora.task_type, Some(crate::TaskType::CausalLm));
        assert_eq!(lora.extra.unknown(lora::PYTHON_LORA_KEYS), vec!["something_new"]);
        let written = config.to_json_string();
        let back = PeftConfig::from_json_str(&written, Path::new("x")).expect("reparses");
        assert_eq!(back, config);
        assert!(written.contains("\"something_new\": 3"));
    }

    #[test]
    fn other_methods_and_features_are_named() {
        let ia3 = PeftConfig::from_json_str(r#"{"peft_type": "IA3"}"#, Path::new("a.json")).expect_err("IA3");
        assert!(ia3.to_string().contains("IA3"), "{ia3}");
        let dora = PeftConfig::from_json_str(r#"{"peft_type": "LORA", "use_dora": true}"#, Path::new("a.json"))
            .expect_err("DoRA");
        assert!(dora.to_string().contains("use_dora"), "{dora}");
        let replication =
            PeftConfig::from_json_str(r#"{"layer_replication": [[0, 2]]}"#, Path::new("a.json")).expect_err("x");
        assert!(replication.to_string().contains("layer_replication"), "{replication}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn configs_round_trip_through_json(
            r in 1usize..64, alpha in 1u32..128, dropout in 0.0f64..0.9, rslora: bool,
            names in proptest::collection::vec("[a-z_]{1,8}", 0..4), bias in 0usize..3,
        ) {
            let mut names = names;
            names.sort();
            let config = LoraConfig::new(r)
                .with_lora_alpha(f64::from(alpha))
                .with_lora_dropout(dropout)
                .with_use_rslora(rslora)
                .with_target_modules(crate::TargetModules::Names(names))
                .with_bias([Bias::None, Bias::All, Bias::LoraOnly][bias]);
            let config = PeftConfig::from(config);
            let back = PeftConfig::from_json_str(&config.to_json_string(), Path::new("x")).expect("reparses");
            prop_assert_eq!(back, config);
        }
    }
}
