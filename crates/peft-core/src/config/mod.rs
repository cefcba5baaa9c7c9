//! Adapter configs and `adapter_config.json`.
//!
//! Every method's config is a serde struct with the Python library's field names and defaults,
//! holding the shared fields in a flattened [`CommonConfig`]. [`PeftConfig`] is the tagged union
//! of all of them; adding a method adds one variant here and one arm to `on_config!`.

mod adalora;
mod adaption_prompt;
mod common;
mod extra;
mod ia3;
mod lora;
mod prompt;

pub use adalora::AdaLoraConfig;
pub use adaption_prompt::AdaptionPromptConfig;
pub use common::{CommonConfig, MethodConfig};
pub use extra::ExtraKeys;
pub use ia3::Ia3Config;
pub use lora::{Bias, InitLoraWeights, LoraConfig};
pub use prompt::{
    PrefixTuningConfig, PrefixTuningInit, PromptEncoderConfig, PromptEncoderReparameterizationType, PromptLearningFields, PromptTuningConfig,
    PromptTuningInit,
};

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
    /// `"peft_type": "ADALORA"`.
    #[serde(rename = "ADALORA")]
    AdaLora(AdaLoraConfig),
    /// `"peft_type": "IA3"`.
    #[serde(rename = "IA3")]
    Ia3(Ia3Config),
    /// `"peft_type": "PROMPT_TUNING"`.
    #[serde(rename = "PROMPT_TUNING")]
    PromptTuning(PromptTuningConfig),
    /// `"peft_type": "P_TUNING"`.
    #[serde(rename = "P_TUNING")]
    PTuning(PromptEncoderConfig),
    /// `"peft_type": "PREFIX_TUNING"`.
    #[serde(rename = "PREFIX_TUNING")]
    PrefixTuning(PrefixTuningConfig),
    /// `"peft_type": "ADAPTION_PROMPT"`.
    #[serde(rename = "ADAPTION_PROMPT")]
    AdaptionPrompt(AdaptionPromptConfig),
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
            PeftConfig::AdaLora($c) => $body,
            PeftConfig::Ia3($c) => $body,
            PeftConfig::PromptTuning($c) => $body,
            PeftConfig::PTuning($c) => $body,
            PeftConfig::PrefixTuning($c) => $body,
            PeftConfig::AdaptionPrompt($c) => $body,
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
            PeftConfig::AdaLora(c) => c.bias,
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
            // The Python class has no `modules_to_save` and warns about the key when reading it.
            if matches!(self, PeftConfig::AdaptionPrompt(_)) && map.get("modules_to_save") == Some(&Value::Null) {
                map.remove("modules_to_save");
            }
            map.sort_keys();
        }
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }

    /// The LoRA config, or [`Error::WrongMethod`] for another method.
    pub fn into_lora(self, file: &Path) -> Result<LoraConfig> {
        match self {
            PeftConfig::Lora(c) => Ok(c),
            other => Err(Error::WrongMethod { expected: "LORA".into(), found: other.method_name().to_string(), path: file.into() }),
        }
    }
}

fn warn_unknown<C: MethodConfig>(config: &C, file: &Path) {
    config.extra().warn_unknown(C::PYTHON_KEYS, file);
}

#[cfg(test)]
mod hostile_tests;

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
            .expect("DoRA is LoRA with use_dora");
        assert!(matches!(&dora, PeftConfig::Lora(c) if c.use_dora), "{dora:?}");
        let replication =
            PeftConfig::from_json_str(r#"{"layer_replication": [[0, 2]]}"#, Path::new("a.json")).expect_err("x");
        assert!(replication.to_string().contains("layer_replication"), "{replication}");
        // Every method of the PEFT docs parses into its own variant.
        let ia3 = PeftConfig::from_json_str(r#"{"peft_type": "IA3", "target_modules": ["k", "v"]}"#, Path::new("a.json"))
            .expect("IA3 parses");
        assert_eq!(ia3.peft_type(), Some(PeftType::Ia3));
        assert!(matches!(&ia3, PeftConfig::Ia3(c) if c.target_modules.names() == ["k".to_string(), "v".to_string()]));
        let kasa = r#"{"peft_type": "ADALORA", "total_step": 10, "kasa_config": {"k": 1}}"#;
        let kasa = PeftConfig::from_json_str(kasa, Path::new("a.json")).expect_err("a LoRA variant");
        assert!(kasa.to_string().contains("kasa_config"), "{kasa}");
        let adalora = PeftConfig::from_json_str(r#"{"peft_type": "ADALORA"}"#, Path::new("a.json")).expect_err("total_step");
        assert!(matches!(adalora, Error::InvalidConfig { field: "total_step", .. }), "{adalora:?}");
    }

    #[test]
    fn each_method_has_its_variant_and_bias() {
        let configs: [(PeftConfig, PeftType); 6] = [
            (AdaLoraConfig::new(10).with_bias(Bias::All).into(), PeftType::AdaLora),
            (Ia3Config::new(["k"]).into(), PeftType::Ia3),
            (PromptTuningConfig::new(4).into(), PeftType::PromptTuning),
            (PromptEncoderConfig::new(4).into(), PeftType::PTuning),
            (PrefixTuningConfig::new(4).into(), PeftType::PrefixTuning),
            (AdaptionPromptConfig::new(4, 1).into(), PeftType::AdaptionPrompt),
        ];
        for (config, method) in configs {
            assert_eq!(config.peft_type(), Some(method));
            assert_eq!(config.method_name(), method.as_str());
            config.validate().expect("valid");
            let json = config.to_json_string();
            assert!(json.contains(&format!("\"peft_type\": \"{method}\"")), "{json}");
            let back = PeftConfig::from_json_str(&json, Path::new("x")).expect("reparses");
            assert_eq!(back, config);
            let bias = if method == PeftType::AdaLora { Bias::All } else { Bias::None };
            assert_eq!(config.bias(), bias, "{method}");
        }
        let adaption = PeftConfig::from(AdaptionPromptConfig::new(4, 1)).to_json_string();
        assert!(!adaption.contains("modules_to_save"), "the Python class has no modules_to_save: {adaption}");
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

        #[test]
        fn adalora_configs_round_trip(
            init_r in 1usize..16, target in 0usize..16, tinit in 0usize..5, tfinal in 0usize..5, extra_steps in 1usize..100,
            delta_t in 1usize..8, beta1 in 0.0f64..0.99, beta2 in 0.0f64..0.99, orth in 0.0f64..2.0,
            alpha in 1u32..64, dropout in 0.0f64..0.9, names in proptest::collection::vec("[a-z_]{1,8}", 0..4),
            kept in proptest::collection::vec(any::<bool>(), 16), bias in 0usize..3,
        ) {
            let mut names = names;
            names.sort();
            let mut config = AdaLoraConfig::new(tinit + tfinal + extra_steps)
                .with_init_r(init_r)
                .with_target_r(1 + target % init_r)
                .with_tinit(tinit)
                .with_tfinal(tfinal)
                .with_delta_t(delta_t)
                .with_betas(beta1, beta2)
                .with_orth_reg_weight(orth)
                .with_lora_alpha(f64::from(alpha))
                .with_lora_dropout(dropout)
                .with_bias([Bias::None, Bias::All, Bias::LoraOnly][bias]);
            if let Some(first) = names.first() {
                config = config.with_rank_pattern(format!("{first}.lora_E"), kept[..init_r].to_vec());
            }
            let config = PeftConfig::from(config.with_target_modules(crate::TargetModules::Names(names)));
            prop_assert!(config.validate().is_ok(), "{:?}", config.validate());
            let back = PeftConfig::from_json_str(&config.to_json_string(), Path::new("x")).expect("reparses");
            prop_assert_eq!(back, config);
        }

        #[test]
        fn ia3_configs_round_trip(
            names in proptest::collection::btree_set("[a-z_]{1,8}", 1..5), ff in 0usize..5, fan_in_fan_out: bool, init: bool,
        ) {
            let names: Vec<String> = names.into_iter().collect();
            let config = Ia3Config::new(names.clone())
                .with_feedforward_modules(names[..ff.min(names.len())].to_vec())
                .with_fan_in_fan_out(fan_in_fan_out)
                .with_init_ia3_weights(init);
            let config = PeftConfig::from(config);
            let back = PeftConfig::from_json_str(&config.to_json_string(), Path::new("x")).expect("reparses");
            prop_assert_eq!(back, config);
        }

        #[test]
        fn prompt_learning_configs_round_trip(
            tokens in 1usize..64, dim in proptest::option::of(1usize..512), heads in proptest::option::of(1usize..16),
            layers in proptest::option::of(1usize..48), stacks in proptest::option::of(1usize..3), kind in 0usize..3,
            text in "[a-zA-Z :]{0,20}", hidden in proptest::option::of(1usize..256), dropout in 0.0f64..0.9,
            lstm: bool, encoder_layers in 1usize..4, projection: bool, zero: bool,
        ) {
            let sizes = PromptLearningFields {
                num_virtual_tokens: tokens, token_dim: dim, num_transformer_submodules: stacks, num_attention_heads: heads, num_layers: layers,
            };
            let mut tuning = match kind {
                0 => PromptTuningConfig::new(tokens),
                1 => PromptTuningConfig::new(tokens).with_prompt_tuning_init(PromptTuningInit::SampleVocab),
                _ => PromptTuningConfig::new(tokens).with_init_text(text, "tok").with_tokenizer_kwarg("use_fast", Value::Bool(lstm)),
            };
            tuning.prompt_learning = sizes.clone();
            let kind = if lstm { PromptEncoderReparameterizationType::Lstm } else { PromptEncoderReparameterizationType::Mlp };
            let mut encoder = PromptEncoderConfig::new(tokens)
                .with_encoder_reparameterization_type(kind)
                .with_encoder_num_layers(encoder_layers)
                .with_encoder_dropout(dropout);
            encoder.encoder_hidden_size = hidden;
            encoder.prompt_learning = sizes.clone();
            let mut prefix = PrefixTuningConfig::new(tokens)
                .with_prefix_projection(projection)
                .with_init_weights(zero.then_some(PrefixTuningInit::Zero));
            prefix.encoder_hidden_size = hidden;
            prefix.prompt_learning = sizes;
            for config in [PeftConfig::from(tuning), encoder.into(), prefix.into()] {
                prop_assert!(config.validate().is_ok(), "{:?}", config.validate());
                let back = PeftConfig::from_json_str(&config.to_json_string(), Path::new("x")).expect("reparses");
                prop_assert_eq!(back, config);
            }
        }

        #[test]
        fn adaption_prompt_configs_round_trip(len in 1usize..64, layers in 1usize..64, target in proptest::option::of("[a-z_]{1,10}")) {
            let mut config = AdaptionPromptConfig::new(len, layers);
            config.target_modules = target;
            let config = PeftConfig::from(config.with_task_type(crate::TaskType::CausalLm));
            let back = PeftConfig::from_json_str(&config.to_json_string(), Path::new("x")).expect("reparses");
            prop_assert_eq!(back, config);
        }
    }
}
