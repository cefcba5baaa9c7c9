//! The `README.md` model card saved beside an adapter, as the Python library's `save_pretrained`
//! writes one: YAML front matter the Hub reads (`base_model`, `library_name: peft`, `tags`,
//! `pipeline_tag` for causal LMs), then a short body naming the method and task and, when the
//! trainer knows them, the training data, hyper-parameters and final metrics.
//!
//! A card is only ever written where there is no `README.md` or where the existing one carries
//! [`CARD_MARKER`] (it was written here): a card the user wrote is left alone.

use peft_core::{Error, PeftConfig, Result};
use std::path::Path;

/// The model card's file name.
pub const CARD_FILE: &str = "README.md";

/// The line that marks a card as written by this library; `save_pretrained` rewrites a card only
/// while it is there.
pub const CARD_MARKER: &str =
    "<!-- Written by the Rust peft crate: save_pretrained rewrites this card while this line is in it; delete the line to keep your edits. -->";

/// What a trainer knows about the run, for the card's body. Every part is optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainingSummary {
    /// The training data, e.g. "`tweets.csv`, 2,700 rows".
    pub data: Option<String>,
    /// The evaluation data, e.g. "300 rows held out of `tweets.csv`".
    pub eval_data: Option<String>,
    /// Hyper-parameters as `(name, value)`, in the order to show.
    pub hyperparameters: Vec<(String, String)>,
    /// Final metrics as `(name, value)`, in the order to show.
    pub metrics: Vec<(String, String)>,
}

/// The card for an adapter with `config`, with the run's `training` summary when there is one.
pub fn model_card(config: &PeftConfig, training: Option<&TrainingSummary>) -> String {
    let json: serde_json::Value = serde_json::from_str(&config.to_json_string()).unwrap_or_default();
    let text = |key: &str| json.get(key).and_then(serde_json::Value::as_str).filter(|s| !s.is_empty());
    let base = text("base_model_name_or_path");
    let peft_type = text("peft_type").unwrap_or("CUSTOM");
    let task = text("task_type");

    let mut card = String::from("---\n");
    if let Some(base) = base {
        card += &format!("base_model: {}\n", yaml_scalar(base));
    }
    card += "library_name: peft\n";
    if task == Some("CAUSAL_LM") {
        card += "pipeline_tag: text-generation\n";
    }
    // The Python library's tags: the adapter's base, `lora` for LoRA, `transformers` for a
    // transformers model (here: a base that is named, i.e. a transformers folder or Hub id).
    let mut tags: Vec<String> = Vec::new();
    if let Some(base) = base {
        tags.push(format!("base_model:adapter:{base}"));
        tags.push("transformers".into());
    }
    if peft_type == "LORA" {
        tags.push("lora".into());
    }
    tags.sort();
    if !tags.is_empty() {
        card += "tags:\n";
        for tag in &tags {
            card += &format!("- {}\n", yaml_scalar(tag));
        }
    }
    card += "---\n\n";

    let method = method_name(peft_type);
    card += &match base {
        Some(base) => format!("# {method} adapter for {base}\n\n"),
        None => format!("# {method} adapter\n\n"),
    };
    card += CARD_MARKER;
    card += "\n\n";
    card += &format!(
        "A {method} adapter saved by the Rust `peft` crate (Burn) in the Python PEFT library's folder layout: \
         `PeftModel.from_pretrained(base_model, \"<this folder>\")` loads it in Python, \
         `PeftModel::from_pretrained` in Rust.\n\n"
    );
    card += "## Adapter\n\n";
    card += &format!("- method: {method} (`peft_type` {peft_type})\n");
    if let Some(task) = task {
        card += &format!("- task: {task} ({})\n", task_name(task));
    }
    if let Some(base) = base {
        card += &format!("- base model: `{base}`\n");
    }
    for key in ["target_modules", "modules_to_save", "feedforward_modules", "r", "lora_alpha", "lora_dropout", "init_r", "target_r", "use_dora", "use_rslora", "num_virtual_tokens", "adapter_len", "adapter_layers"] {
        if let Some(value) = json.get(key).and_then(shown) {
            card += &format!("- {key}: {value}\n");
        }
    }
    if let Some(run) = training {
        if run.data.is_some() || run.eval_data.is_some() {
            card += "\n## Training data\n\n";
            if let Some(data) = &run.data {
                card += &format!("- training: {data}\n");
            }
            if let Some(eval) = &run.eval_data {
                card += &format!("- evaluation: {eval}\n");
            }
        }
        if !run.hyperparameters.is_empty() {
            card += "\n## Training procedure\n\n| hyper-parameter | value |\n|---|---|\n";
            for (name, value) in &run.hyperparameters {
                card += &format!("| {} | {} |\n", cell(name), cell(value));
            }
        }
        if !run.metrics.is_empty() {
            card += "\n## Results\n\n| metric | value |\n|---|---|\n";
            for (name, value) in &run.metrics {
                card += &format!("| {} | {} |\n", cell(name), cell(value));
            }
        }
    }
    card += &format!("\n### Framework versions\n\n- peft (Rust) {}\n", env!("CARGO_PKG_VERSION"));
    card
}

/// Whether a card may be written into `dir`: there is no `README.md`, or the one there was
/// written by this library (it carries [`CARD_MARKER`]).
///
/// # Errors
/// A `README.md` that exists but cannot be read.
pub fn may_write_card(dir: &Path) -> Result<bool> {
    let path = dir.join(CARD_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).contains(CARD_MARKER)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io("cannot read", &path, e)),
    }
}

/// A config value as the card shows it; `None` for nulls, empty lists and `false` flags.
fn shown(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null | serde_json::Value::Bool(false) => None,
        serde_json::Value::Array(items) if items.is_empty() => None,
        serde_json::Value::Array(items) => Some(items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect::<Vec<_>>().join(", ")),
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A YAML scalar: plain when that cannot be misread (a name or path), else double-quoted (a
/// JSON string is a valid YAML double-quoted scalar).
fn yaml_scalar(text: &str) -> String {
    let safe_chars = text.chars().all(|c| c.is_ascii_alphanumeric() || "_./-:".contains(c));
    let safe_start = text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '.');
    let keyword = ["true", "false", "yes", "no", "on", "off", "null", "y", "n"].contains(&text.to_ascii_lowercase().as_str());
    // A `: ` or a trailing `:` would start a mapping; `:` inside a word (`base_model:adapter:x`) does not.
    let mapping = text.contains(": ") || text.ends_with(':');
    if safe_chars && safe_start && !keyword && !mapping { text.to_string() } else { serde_json::Value::from(text).to_string() }
}

/// A Markdown table cell: pipes escaped, one line.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The method's usual name.
fn method_name(peft_type: &str) -> &str {
    match peft_type {
        "LORA" => "LoRA",
        "ADALORA" => "AdaLoRA",
        "IA3" => "(IA)³",
        "PROMPT_TUNING" => "prompt tuning",
        "P_TUNING" => "P-tuning",
        "PREFIX_TUNING" => "prefix tuning",
        "ADAPTION_PROMPT" => "LLaMA-Adapter",
        other => other,
    }
}

/// What a `task_type` means.
fn task_name(task: &str) -> &str {
    match task {
        "SEQ_CLS" => "sequence classification",
        "TOKEN_CLS" => "token classification",
        "CAUSAL_LM" => "causal language modelling",
        "SEQ_2_SEQ_LM" => "sequence-to-sequence language modelling",
        "QUESTION_ANS" => "question answering",
        "FEATURE_EXTRACTION" => "feature extraction",
        _ => "task type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> PeftConfig {
        PeftConfig::from_json_str(json, Path::new("test")).expect("config")
    }

    #[test]
    fn front_matter_is_the_python_librarys() {
        let lora = config(r#"{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "/models/llama"}"#);
        let card = model_card(&lora, None);
        let front = "---\nbase_model: /models/llama\nlibrary_name: peft\npipeline_tag: text-generation\ntags:\n\
                     - base_model:adapter:/models/llama\n- lora\n- transformers\n---\n";
        assert!(card.starts_with(front), "{card}");
        assert!(card.contains(CARD_MARKER) && card.contains("- task: CAUSAL_LM") && card.contains("- target_modules: q_proj, v_proj"), "{card}");
        assert!(!card.contains("## Results"));

        // No base recorded: no base_model, no base tags; not LoRA: no `lora` tag, no pipeline tag.
        let ia3 = model_card(&config(r#"{"peft_type": "IA3", "task_type": "SEQ_CLS", "target_modules": ["query"]}"#), None);
        assert!(ia3.starts_with("---\nlibrary_name: peft\n---\n"), "{ia3}");
    }

    #[test]
    fn training_summary_goes_into_the_body() {
        let lora = config(r#"{"peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": "my model: v2"}"#);
        let run = TrainingSummary {
            data: Some("`tweets.csv`, 2700 rows".into()),
            eval_data: Some("300 rows held out".into()),
            hyperparameters: vec![("steps".into(), "100".into())],
            metrics: vec![("held-out accuracy".into(), "0.970".into()), ("a|b".into(), "1".into())],
        };
        let card = model_card(&lora, Some(&run));
        // A base with `: ` is quoted, so the YAML still parses.
        assert!(card.starts_with("---\nbase_model: \"my model: v2\"\n"), "{card}");
        for part in ["## Training data", "- training: `tweets.csv`, 2700 rows", "| steps | 100 |", "| held-out accuracy | 0.970 |", "| a\\|b | 1 |"] {
            assert!(card.contains(part), "no `{part}` in\n{card}");
        }
    }

    #[test]
    fn only_missing_or_own_cards_may_be_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(may_write_card(dir.path()).expect("no card"));
        std::fs::write(dir.path().join(CARD_FILE), "# My adapter\n\nNotes of my own.\n").expect("write");
        assert!(!may_write_card(dir.path()).expect("user card"));
        let own = model_card(&config(r#"{"peft_type": "LORA"}"#), None);
        std::fs::write(dir.path().join(CARD_FILE), own).expect("write");
        assert!(may_write_card(dir.path()).expect("own card"));
    }

    #[test]
    fn yaml_scalars_that_could_be_misread_are_quoted() {
        assert_eq!(yaml_scalar("org/name"), "org/name");
        assert_eq!(yaml_scalar("./models/bert-base"), "./models/bert-base");
        assert_eq!(yaml_scalar("base_model:adapter:org/name"), "base_model:adapter:org/name");
        assert_eq!(yaml_scalar("true"), "\"true\"");
        assert_eq!(yaml_scalar("123"), "\"123\"");
        assert_eq!(yaml_scalar("C:\\models\\x"), "\"C:\\\\models\\\\x\"");
        assert_eq!(yaml_scalar("a # b"), "\"a # b\"");
    }
}
