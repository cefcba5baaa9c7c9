//! `peft inspect ADAPTER`: what an adapter folder holds.

use anyhow::{Context, Result};
use peft::PeftConfig;
use peft::io::adapter::{KEY_PREFIX, WEIGHTS_FILE};
use peft::io::tensors::describe_safetensors;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Arguments of `peft inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The adapter folder (adapter_config.json + adapter_model.safetensors), or a Hub id.
    adapter: PathBuf,
    /// The revision of a Hub id (default `main`).
    #[arg(long)]
    revision: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The summary `peft inspect` prints.
pub fn summary(dir: &std::path::Path) -> Result<serde_json::Value> {
    let config = PeftConfig::from_dir(dir)?;
    let file = dir.join(WEIGHTS_FILE);
    let tensors = describe_safetensors(&file)?;
    let size = std::fs::metadata(&file).with_context(|| format!("cannot stat {}", file.display()))?.len();
    let mut modules: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut dtypes: Vec<String> = Vec::new();
    let mut params = 0usize;
    for t in &tensors {
        params += t.shape.iter().product::<usize>();
        if !dtypes.contains(&t.dtype) {
            dtypes.push(t.dtype.clone());
        }
        let key = t.name.strip_prefix(KEY_PREFIX).unwrap_or(&t.name);
        // The rank is the first axis of `lora_A` (or `lora_embedding_A`).
        for marker in [".lora_A.weight", ".lora_embedding_A"] {
            if let Some(module) = key.strip_suffix(marker) {
                modules.entry(module.to_string()).or_default().push(t.shape.first().copied().unwrap_or(0));
            }
        }
        // (IA)³: one vector per module, no rank.
        if let Some(module) = key.strip_suffix(".ia3_l") {
            modules.entry(module.to_string()).or_default();
        }
    }
    let mut ranks: Vec<usize> = modules.values().flatten().copied().collect();
    ranks.sort_unstable();
    ranks.dedup();
    let base = config.base_model_name_or_path().map(str::to_string);
    Ok(serde_json::json!({
        "method": config.method_name(),
        "task_type": config.task_type().map(|t| t.as_str()),
        "base_model": base,
        "targeted_modules": modules.keys().collect::<Vec<_>>(),
        "ranks": ranks,
        "modules_to_save": config.modules_to_save(),
        "labels": crate::labels::read(dir)?,
        "parameters": params,
        "tensors": tensors.len(),
        "size_bytes": size,
        "dtypes": dtypes,
    }))
}

/// Runs `peft inspect`.
pub fn run(args: Args) -> Result<()> {
    let s = summary(&crate::hub::adapter(&args.adapter, args.revision.as_deref())?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let field = |k: &str| s.get(k).cloned().unwrap_or_default();
    println!("method:           {}", field("method").as_str().unwrap_or("?"));
    println!("task type:        {}", field("task_type").as_str().unwrap_or("-"));
    println!("base model:       {}", field("base_model").as_str().unwrap_or("-"));
    println!("ranks:            {}", field("ranks"));
    println!("parameters:       {}", peft::thousands(field("parameters").as_u64().unwrap_or(0) as usize));
    println!("size:             {} bytes in {} tensors ({})", field("size_bytes"), field("tensors"), field("dtypes"));
    println!("modules to save:  {}", field("modules_to_save"));
    if let Some(labels) = field("labels").as_array() {
        let names: Vec<&str> = labels.iter().filter_map(|l| l.as_str()).collect();
        println!("labels:           {}", names.join(", "));
    }
    println!("targeted modules:");
    for m in field("targeted_modules").as_array().into_iter().flatten() {
        println!("  {}", m.as_str().unwrap_or(""));
    }
    Ok(())
}
