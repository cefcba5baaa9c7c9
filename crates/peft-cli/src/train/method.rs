//! The method config `peft train` fits: the method's starting config, then `--config`, then the
//! flags, each flag checked against the methods it belongs to.

use anyhow::{Context, Result, bail};
use peft::{PeftConfig, TaskType};
use std::path::Path;

use crate::commands::train::Args;

/// The methods `peft train` can fit: the name on the command line and the config it starts from
/// (the Python library's defaults, with LoRA's rank and alpha as its guides use them).
pub const METHODS: &[(&str, &str)] = &[
    ("lora", r#"{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "lora_dropout": 0.05}"#),
    // The Python defaults (init_r 12 pruned towards 8, lora_alpha 8); `total_step` is the run's.
    ("adalora", r#"{"peft_type": "ADALORA", "lora_dropout": 0.05}"#),
    ("ia3", r#"{"peft_type": "IA3"}"#),
    ("prompt-tuning", r#"{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 8}"#),
    ("p-tuning", r#"{"peft_type": "P_TUNING", "num_virtual_tokens": 8}"#),
    ("prefix-tuning", r#"{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 8}"#),
    // The paper's prompt length; the layer count has no sensible default (Python has none).
    ("llama-adapter", r#"{"peft_type": "ADAPTION_PROMPT", "adapter_len": 10}"#),
];

/// The names of [`METHODS`], for messages.
pub fn method_names() -> String {
    METHODS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// A method-specific flag: its name, whether it was given, and the methods it applies to.
struct Flag {
    name: &'static str,
    given: bool,
    methods: &'static [&'static str],
}

const PROMPT: &[&str] = &["prompt-tuning", "p-tuning", "prefix-tuning"];

fn flags(args: &Args) -> [Flag; 16] {
    let lora = &["lora"][..];
    let lora_family = &["lora", "adalora"][..];
    [
        Flag { name: "--r", given: args.r.is_some(), methods: lora },
        Flag { name: "--lora-alpha", given: args.lora_alpha.is_some(), methods: lora_family },
        Flag { name: "--lora-dropout", given: args.lora_dropout.is_some(), methods: lora_family },
        Flag { name: "--init-r", given: args.init_r.is_some(), methods: &["adalora"] },
        Flag { name: "--target-r", given: args.target_r.is_some(), methods: &["adalora"] },
        Flag { name: "--total-step", given: args.total_step.is_some(), methods: &["adalora"] },
        Flag { name: "--use-dora", given: args.use_dora, methods: lora },
        Flag { name: "--init-lora-weights", given: args.init_lora_weights.is_some(), methods: lora },
        Flag { name: "--target-modules", given: args.target_modules.is_some(), methods: &["lora", "adalora", "ia3", "llama-adapter"] },
        Flag { name: "--feedforward-modules", given: args.feedforward_modules.is_some(), methods: &["ia3"] },
        Flag { name: "--num-virtual-tokens", given: args.num_virtual_tokens.is_some(), methods: PROMPT },
        Flag { name: "--prompt-tuning-init-text", given: args.prompt_tuning_init_text.is_some(), methods: &["prompt-tuning"] },
        Flag { name: "--encoder-hidden-size", given: args.encoder_hidden_size.is_some(), methods: &["p-tuning", "prefix-tuning"] },
        Flag { name: "--prefix-projection", given: args.prefix_projection, methods: &["prefix-tuning"] },
        Flag { name: "--adapter-len", given: args.adapter_len.is_some(), methods: &["llama-adapter"] },
        Flag { name: "--adapter-layers", given: args.adapter_layers.is_some(), methods: &["llama-adapter"] },
    ]
}

/// The config: the method's start, then `--config`, then the flags and `--set`.
///
/// # Errors
/// An unknown method, a flag of another method (named with the methods it belongs to), a
/// `--config` file that is not a JSON object, a config the method refuses.
pub fn method_config(args: &Args, task: TaskType) -> Result<PeftConfig> {
    let method = args.method.to_ascii_lowercase();
    let Some((_, start)) = METHODS.iter().find(|(name, _)| *name == method) else {
        bail!("unknown method `{}`; `peft train` supports: {}", args.method, method_names());
    };
    if let Some(flag) = flags(args).iter().find(|f| f.given && !f.methods.contains(&method.as_str())) {
        let owners = flag.methods.join("|");
        let instead = match (flag.name, method.as_str()) {
            ("--r", "adalora") => "AdaLoRA starts at --init-r and prunes towards --target-r",
            (_, "llama-adapter") => "LLaMA-Adapter takes --adapter-len and --adapter-layers",
            _ => "set other fields with --set or --config",
        };
        bail!("{} belongs to --method {owners}, not --method {method} ({instead})", flag.name);
    }
    let mut json: serde_json::Value = serde_json::from_str(start)?;
    json["task_type"] = serde_json::to_value(task)?;
    if method == "adalora" {
        json["total_step"] = args.steps.into();
    }
    // The base is recorded so the adapter reloads with `--adapter` alone (and in Python).
    json["base_model_name_or_path"] = args.model_id.clone().unwrap_or_else(|| args.model.display().to_string()).into();
    if let Some(revision) = &args.revision {
        json["revision"] = revision.clone().into();
    }
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the config {}", path.display()))?;
        let file: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        let Some(object) = file.as_object() else { bail!("{} must hold a JSON object", path.display()) };
        for (k, v) in object {
            json[k] = v.clone();
        }
    }
    let list = |text: &str| -> serde_json::Value {
        text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>().into()
    };
    set(&mut json, "r", args.r);
    set(&mut json, "lora_alpha", args.lora_alpha);
    set(&mut json, "lora_dropout", args.lora_dropout);
    if args.use_dora {
        json["use_dora"] = true.into();
    }
    if let Some(init) = &args.init_lora_weights {
        json["init_lora_weights"] = serde_json::from_str(init).unwrap_or_else(|_| init.as_str().into());
    }
    if let Some(targets) = &args.target_modules {
        // LLaMA-Adapter names one attention module, not a list (Python's AdaptionPromptConfig).
        let single = targets == "all-linear" || method == "llama-adapter";
        json["target_modules"] = if single { targets.as_str().into() } else { list(targets) };
    }
    if let Some(modules) = &args.feedforward_modules {
        json["feedforward_modules"] = list(modules);
    }
    set(&mut json, "num_virtual_tokens", args.num_virtual_tokens);
    if let Some(text) = &args.prompt_tuning_init_text {
        json["prompt_tuning_init"] = "TEXT".into();
        json["prompt_tuning_init_text"] = text.as_str().into();
        // The training tokenizer: `get_peft_model` tokenizes the text with it (and the Python
        // library refuses a TEXT config without one).
        let tokenizer = args.tokenizer.as_ref().unwrap_or(&args.model);
        json["tokenizer_name_or_path"] = tokenizer.display().to_string().into();
    }
    set(&mut json, "encoder_hidden_size", args.encoder_hidden_size);
    if args.prefix_projection {
        json["prefix_projection"] = true.into();
    }
    set(&mut json, "init_r", args.init_r);
    set(&mut json, "target_r", args.target_r);
    set(&mut json, "total_step", args.total_step);
    set(&mut json, "adapter_len", args.adapter_len);
    set(&mut json, "adapter_layers", args.adapter_layers);
    for pair in &args.set {
        let Some((key, value)) = pair.split_once('=') else { bail!("--set `{pair}`: write KEY=VALUE, e.g. --set use_rslora=true") };
        json[key.trim()] = serde_json::from_str(value).unwrap_or_else(|_| value.into());
    }
    Ok(PeftConfig::from_json_str(&json.to_string(), Path::new("the --config file and flags"))?)
}

fn set<T: Into<serde_json::Value>>(json: &mut serde_json::Value, key: &str, value: Option<T>) {
    if let Some(v) = value {
        json[key] = v.into();
    }
}
