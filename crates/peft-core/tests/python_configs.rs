//! The configs of every method of the PEFT docs, as Python PEFT 0.21.2 writes them
//! (`fixtures/configs/`, made by `fixtures/gen_configs.py`): each parses into its variant with the
//! values the script set, knows every key Python wrote, and round-trips through `to_json_string`.

use std::path::{Path, PathBuf};

use peft_core::{
    AdaLoraConfig, AdaptionPromptConfig, Bias, ExtraKeys, Ia3Config, MethodConfig, PeftConfig, PeftType, PrefixTuningConfig, PrefixTuningInit,
    PromptEncoderConfig, PromptEncoderReparameterizationType, PromptTuningConfig, PromptTuningInit, TargetModules, TaskType,
};
use serde_json::Value;

fn fixture(method: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/configs").join(method)
}

/// Reads the fixture and checks what every method shares: its variant, no unknown key, the keys
/// written back, and an equal config on re-reading.
fn load<C: MethodConfig>(method: &str, unwrap: fn(&PeftConfig) -> Option<&C>) -> C {
    let dir = fixture(method);
    let config = PeftConfig::from_dir(&dir).unwrap_or_else(|e| panic!("{method}: {e}"));
    assert_eq!(config.peft_type(), Some(C::PEFT_TYPE), "{method}");
    let Some(inner) = unwrap(&config) else { panic!("{method}: parsed as {}", config.method_name()) };
    let extra: &ExtraKeys = inner.extra();
    assert_eq!(extra.unknown(C::PYTHON_KEYS), Vec::<&str>::new(), "{method}: keys Python writes that are neither fields nor known");

    // Written back, every key Python wrote is there with the same value (numbers compared as
    // numbers: Python writes `16` where the field is a float, this crate `16.0`; module lists
    // as sets: Python writes them in set order, this crate sorted).
    let python: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).expect("read")).expect("json");
    let written = config.to_json_string();
    let ours: Value = serde_json::from_str(&written).expect("json");
    for (key, value) in python.as_object().expect("an object") {
        let back = ours.get(key).unwrap_or_else(|| panic!("{method}: `{key}` is not written back:\n{written}"));
        let same = match (value, back) {
            (Value::Array(a), Value::Array(b)) if key.ends_with("_modules") => {
                let (mut a, mut b) = (a.iter().map(Value::to_string).collect::<Vec<_>>(), b.iter().map(Value::to_string).collect::<Vec<_>>());
                a.sort();
                b.sort();
                a == b
            }
            _ => match (value.as_f64(), back.as_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => value == back,
            },
        };
        assert!(same, "{method}: `{key}` was {value}, is written as {back}");
    }
    let again = PeftConfig::from_json_str(&written, Path::new("written")).expect("reparses");
    assert_eq!(again, config, "{method}");
    inner.clone()
}

#[test]
fn adalora_file_of_python() {
    let c = load::<AdaLoraConfig>("adalora", |c| if let PeftConfig::AdaLora(c) = c { Some(c) } else { None });
    assert_eq!((c.init_r, c.target_r, c.tinit, c.tfinal, c.delta_t, c.total_step), (6, 3, 2, 3, 2, Some(10)));
    assert_eq!((c.beta1, c.beta2, c.orth_reg_weight, c.lora_alpha, c.lora_dropout), (0.8, 0.9, 0.25, 16.0, 0.1));
    assert_eq!(c.bias, Bias::LoraOnly);
    assert_eq!(c.target_modules, TargetModules::Names(vec!["q_proj".into(), "v_proj".into()]));
    assert_eq!(c.common.modules_to_save, Some(vec!["down_proj".to_string()]));
    assert!(c.common.inference_mode);
    let pattern = c.rank_pattern.as_ref().expect("the allocator's rank_pattern");
    assert_eq!(pattern.keys().collect::<Vec<_>>(), ["q_proj.lora_E", "v_proj.lora_E"]);
    // Each entry keeps target_r of init_r ranks on average: 3 + 3 of 2 x 6 here.
    assert_eq!(pattern.values().map(|kept| kept.len()).collect::<Vec<_>>(), [6, 6]);
    assert_eq!(pattern.values().flatten().filter(|k| **k).count(), 6);
    // LoRA keys AdaLoRA ignores are kept as written.
    assert_eq!(c.extra.0["r"], 8);
    assert_eq!(c.extra.0["use_rslora"], false);
}

#[test]
fn ia3_file_of_python() {
    let c = load::<Ia3Config>("ia3", |c| if let PeftConfig::Ia3(c) = c { Some(c) } else { None });
    assert_eq!(c.target_modules.names(), ["down_proj", "q_proj", "v_proj"]);
    assert_eq!(c.feedforward_modules.names(), ["down_proj"]);
    assert_eq!(c.exclude_modules.names(), ["k_proj"]);
    assert!(!c.init_ia3_weights);
    assert!(!c.fan_in_fan_out);
    assert_eq!(c.common.task_type, Some(TaskType::FeatureExtraction));
    assert!(c.is_feedforward("model.down_proj"));
}

#[test]
fn prompt_tuning_file_of_python() {
    let c = load::<PromptTuningConfig>("prompt_tuning", |c| if let PeftConfig::PromptTuning(c) = c { Some(c) } else { None });
    let p = &c.prompt_learning;
    assert_eq!((p.num_virtual_tokens, p.token_dim, p.num_transformer_submodules, p.num_attention_heads, p.num_layers), (12, Some(32), Some(1), Some(4), Some(2)));
    assert_eq!(c.prompt_tuning_init, PromptTuningInit::Text);
    assert_eq!(c.prompt_tuning_init_text.as_deref(), Some("Classify the sentiment of this review:"));
    assert_eq!(c.tokenizer_name_or_path.as_deref(), Some("models/llama"));
    assert_eq!(c.tokenizer_kwargs.as_ref().map(|k| k["use_fast"].clone()), Some(Value::Bool(false)));
    assert_eq!(c.common.revision.as_deref(), Some("main"));
    assert_eq!(c.common.task_type, Some(TaskType::CausalLm));
}

#[test]
fn p_tuning_file_of_python() {
    let c = load::<PromptEncoderConfig>("p_tuning", |c| if let PeftConfig::PTuning(c) = c { Some(c) } else { None });
    assert_eq!(c.prompt_learning.num_virtual_tokens, 10);
    assert_eq!(c.encoder_reparameterization_type, PromptEncoderReparameterizationType::Lstm);
    assert_eq!((c.encoder_hidden_size, c.encoder_num_layers, c.encoder_dropout), (Some(64), 3, 0.1));
    assert_eq!(c.common.modules_to_save, Some(vec!["classifier".to_string()]));
    assert_eq!(c.common.task_type, Some(TaskType::SeqCls));
}

#[test]
fn prefix_tuning_file_of_python() {
    let c = load::<PrefixTuningConfig>("prefix_tuning", |c| if let PeftConfig::PrefixTuning(c) = c { Some(c) } else { None });
    assert_eq!((c.prompt_learning.num_virtual_tokens, c.prompt_learning.num_transformer_submodules), (20, Some(2)));
    assert_eq!(c.encoder_hidden_size, Some(48));
    assert!(c.prefix_projection);
    assert_eq!(c.init_weights, Some(PrefixTuningInit::Zero));
    assert_eq!(c.common.task_type, Some(TaskType::Seq2SeqLm));
}

#[test]
fn adaption_prompt_file_of_python() {
    let c = load::<AdaptionPromptConfig>("adaption_prompt", |c| if let PeftConfig::AdaptionPrompt(c) = c { Some(c) } else { None });
    assert_eq!(c.target_modules.as_deref(), Some("self_attn"));
    assert_eq!((c.adapter_len, c.adapter_layers), (Some(10), Some(2)));
    assert_eq!(c.common.modules_to_save, None);
    let written = PeftConfig::from(c).to_json_string();
    assert!(!written.contains("modules_to_save"), "Python's AdaptionPromptConfig has no such key:\n{written}");
}

#[test]
fn every_method_of_the_docs_has_a_fixture() {
    let methods = [
        (PeftType::AdaLora, "adalora"),
        (PeftType::Ia3, "ia3"),
        (PeftType::PromptTuning, "prompt_tuning"),
        (PeftType::PTuning, "p_tuning"),
        (PeftType::PrefixTuning, "prefix_tuning"),
        (PeftType::AdaptionPrompt, "adaption_prompt"),
    ];
    for (method, folder) in methods {
        let config = PeftConfig::from_dir(fixture(folder)).unwrap_or_else(|e| panic!("{folder}: {e}"));
        assert_eq!(config.peft_type(), Some(method), "{folder}");
    }
}

// PEFT 0.21.2 also writes `kasa_config`, `lora_ga_config`, `monteclora_config`, `use_bdlora` and
// `velora_config` for LoRA; a LoRA file of the reference version must not warn either.
#[test]
fn lora_files_of_python_have_no_unknown_keys() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cases/llama_qv/adapter");
    let PeftConfig::Lora(c) = PeftConfig::from_dir(&dir).expect("parses") else { panic!("a LoRA config") };
    assert_eq!(c.extra.unknown(<peft_core::LoraConfig as MethodConfig>::PYTHON_KEYS), Vec::<&str>::new());
    for key in ["kasa_config", "monteclora_config", "use_bdlora", "velora_config"] {
        let json = format!(r#"{{"peft_type": "LORA", "{key}": {{"on": true}}}}"#);
        let e = PeftConfig::from_json_str(&json, Path::new("a.json")).expect_err("a LoRA variant this crate lacks");
        assert!(e.to_string().contains(key), "{e}");
    }
}
