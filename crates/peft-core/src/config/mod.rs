//! Adapter configs and `adapter_config.json`.
//!
//! Every method's config is a serde struct with the Python library's field names and defaults,
//! holding the shared fields in a flattened [`CommonConfig`]. [`PeftConfig`] is the tagged union
//! of all of them; adding a method adds one variant here and one arm to `on_config!`.

mod common;
mod extra;
mod lora;

pub use common::{CommonConfig, MethodConfig};
pub use extra::ExtraKeys;
pub use lora::{Bias, InitLoraWeights, LoraConfig};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

use crate::{Error, PeftType, Result};

/// The name of an adapter's config file.
pub const CONFIG_FILE: &str = "adapter_config.json";

/// Any adapter config, tagged by `peft_type` as in `adapter_config.json`.
///
/// Every method of the PEFT documentation has its config here, whether or not this build has the
/// method itself: attaching a config whose method crate is not compiled in fails with
/// [`Error::Unsupported`] naming the crate and the feature that add it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "peft_type")]
pub enum PeftConfig {
    /// `"peft_type": "LORA"`.
    #[serde(rename = "LORA")]
    Lora(LoraConfig),
    /// A method this crate does not define: yours, attached with
    /// `PeftModel::add_adapter_with_method` (any `peft_type` the others do not claim).
    #[serde(skip)]
    Custom(CustomConfig),
}

/// The config of a method defined outside this workspace: its `peft_type`, the shared fields,
/// and every other key kept as JSON for the method to read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomConfig {
    /// The method's name in `adapter_config.json`.
    #[serde(skip)]
    pub peft_type: String,
    /// The fields every method shares.
    #[serde(flatten)]
    pub common: CommonConfig,
    /// The method's own keys.
    #[serde(flatten)]
    pub fields: ExtraKeys,
}

impl CustomConfig {
    /// A config for method `peft_type` with default shared fields and no keys of its own.
    pub fn new(peft_type: impl Into<String>) -> Self {
        CustomConfig { peft_type: peft_type.into(), ..Default::default() }
    }

    /// Sets one of the method's own keys.
    pub fn with_field(mut self, key: impl Into<String>, value: Value) -> Self {
        self.fields.0.insert(key.into(), value);
        self
    }
}

/// Runs `$body` with `$c` bound to the method config inside `$self`, whatever its method.
macro_rules! on_config {
    ($self:expr, $c:ident => $body:expr) => {
        match $self {
            PeftConfig::Lora($c) => $body,
            PeftConfig::Custom(_) => unreachable!("handled before on_config!"),
        }
    };
}

impl PeftConfig {
    /// The method of this config (`None` for a [`CustomConfig`]).
    pub fn peft_type(&self) -> Option<PeftType> {
        fn of<C: MethodConfig>(_: &C) -> PeftType {
            C::PEFT_TYPE
        }
        match self {
            PeftConfig::Custom(_) => None,
            known => Some(on_config!(known, c => of(c))),
        }
    }

    /// The `peft_type` as written in `adapter_config.json`.
    pub fn method_name(&self) -> &str {
        match (self, self.peft_type()) {
            (PeftConfig::Custom(c), _) => &c.peft_type,
            (_, Some(t)) => t.as_str(),
            (_, None) => "",
        }
    }

    /// The fields every method shares.
    pub fn common(&self) -> &CommonConfig {
        match self {
            PeftConfig::Custom(c) => &c.common,
            known => on_config!(known, c => c.common()),
        }
    }

    /// The fields every method shares, mutably.
    pub fn common_mut(&mut self) -> &mut CommonConfig {
        match self {
            PeftConfig::Custom(c) => &mut c.common,
            known => on_config!(known, c => c.common_mut()),
        }
    }

    /// Checks the method's fields; each error names the field and the fix.
    pub fn validate(&self) -> Result<()> {
        match self {
            PeftConfig::Custom(_) => Ok(()),
            known => on_config!(known, c => c.validate()),
        }
    }

    /// The `bias` mode (methods without one train no bias).
    pub fn bias(&self) -> Bias {
        match self {
            PeftConfig::Lora(c) => c.bias,
            #[allow(unreachable_patterns)]
            _ => Bias::None,
        }
    }

    /// Whether the adapter is for inference only.
    pub fn inference_mode(&self) -> bool {
        self.common().inference_mode
    }

    /// Sets `inference_mode`.
    pub fn set_inference_mode(&mut self, yes: bool) {
        self.common_mut().inference_mode = yes;
    }

    /// The task type, if set.
    pub fn task_type(&self) -> Option<crate::TaskType> {
        self.common().task_type
    }

    /// `base_model_name_or_path`: the Hub name or folder of the base model, if recorded.
    pub fn base_model_name_or_path(&self) -> Option<&str> {
        self.common().base_model_name_or_path.as_deref()
    }

    /// `modules_to_save`, to read or extend.
    pub fn modules_to_save_mut(&mut self) -> &mut Option<Vec<String>> {
        &mut self.common_mut().modules_to_save
    }

    /// `modules_to_save` (empty when unset).
    pub fn modules_to_save(&self) -> Vec<String> {
        self.common().modules_to_save.clone().unwrap_or_default()
    }

    /// Parses the JSON of `adapter_config.json`; `file` names the source in errors and warnings.
    ///
    /// A file without `peft_type` is read as LoRA, as older files of the Python library are.
    pub fn from_json_str(json: &str, file: &Path) -> Result<Self> {
        let mut value: Value = serde_json::from_str(json).map_err(|source| Error::Json { path: file.into(), source })?;
        let Some(map) = value.as_object_mut() else {
            return Err(Error::Format { path: file.into(), format: "adapter_config.json", message: "the file is not a JSON object".into() });
        };
        let peft_type = map.entry("peft_type").or_insert_with(|| Value::String("LORA".into())).clone();
        let Some(name) = peft_type.as_str().map(str::to_string) else {
            let message = format!("`peft_type` must be a string such as \"LORA\", not {peft_type}");
            return Err(Error::Format { path: file.into(), format: "adapter_config.json", message });
        };
        if serde_json::from_value::<PeftType>(peft_type).is_err() {
            // Not one of the PEFT documentation's methods: a method of the user's own.
            map.remove("peft_type");
            let mut custom: CustomConfig = serde_json::from_value(value).map_err(|source| Error::Json { path: file.into(), source })?;
            custom.peft_type = name;
            return Ok(PeftConfig::Custom(custom));
        }
        let config: PeftConfig = serde_json::from_value(value).map_err(|source| Error::Json { path: file.into(), source })?;
        if !matches!(config, PeftConfig::Custom(_)) {
            on_config!(&config, c => warn_unknown(c, file));
        }
        config.validate()?;
        Ok(config)
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
            PeftConfig::Custom(c) => {
                let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
                if let Some(map) = v.as_object_mut() {
                    map.insert("peft_type".into(), Value::String(c.peft_type.clone()));
                }
                v
            }
            known => serde_json::to_value(known).unwrap_or(Value::Null),
        };
        if let Some(map) = value.as_object_mut() {
            map.sort_keys();
        }
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }

    /// The LoRA config, or [`Error::WrongMethod`] for another method.
    pub fn into_lora(self, file: &Path) -> Result<LoraConfig> {
        match self {
            PeftConfig::Lora(c) => Ok(c),
            #[allow(unreachable_patterns)]
            other => Err(Error::WrongMethod { expected: "LORA".into(), found: other.method_name().to_string(), path: file.into() }),
        }
    }
}

fn warn_unknown<C: MethodConfig>(config: &C, file: &Path) {
    config.extra().warn_unknown(C::PYTHON_KEYS, file);
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
        let PeftConfig::Lora(lora) = &config else { panic!("a LoRA config") };
        assert_eq!(lora.target_modules.names(), ["q_proj".to_string(), "v_proj".to_string()]);
        assert_eq!(lora.common.task_type, Some(crate::TaskType::CausalLm));
        assert_eq!(lora.extra.unknown(lora::PYTHON_LORA_KEYS), vec!["something_new"]);
        let written = config.to_json_string();
        let back = PeftConfig::from_json_str(&written, Path::new("x")).expect("reparses");
        assert_eq!(back, config);
        assert!(written.contains("\"something_new\": 3"));
    }

    #[test]
    fn unknown_methods_are_custom_and_round_trip() {
        let json = r#"{"peft_type": "MY_SCALE", "task_type": "SEQ_CLS", "init_scale": 1.5}"#;
        let config = PeftConfig::from_json_str(json, Path::new("a.json")).expect("custom");
        let PeftConfig::Custom(custom) = &config else { panic!("a custom config: {config:?}") };
        assert_eq!(custom.peft_type, "MY_SCALE");
        assert_eq!(custom.common.task_type, Some(crate::TaskType::SeqCls));
        assert_eq!(custom.fields.0["init_scale"], serde_json::json!(1.5));
        assert_eq!(config.peft_type(), None);
        assert_eq!(config.method_name(), "MY_SCALE");
        let back = PeftConfig::from_json_str(&config.to_json_string(), Path::new("x")).expect("reparses");
        assert_eq!(back, config);
        let bad = PeftConfig::from_json_str(r#"{"peft_type": 3}"#, Path::new("a.json")).expect_err("not a string");
        assert!(bad.to_string().contains("peft_type"), "{bad}");
    }

    #[test]
    fn other_methods_and_features_are_named() {
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
