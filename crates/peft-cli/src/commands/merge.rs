//! `peft merge`: fold an adapter into its base and write a model folder transformers can load.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

use crate::models::{LoadSpec, load};

/// Arguments of `peft merge`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The base model folder, or a Hub id read from the local Hugging Face cache.
    #[arg(long)]
    pub base: PathBuf,
    /// The revision of a Hub id `--base` (default `main`).
    #[arg(long)]
    pub revision: Option<String>,
    /// The adapter folder, or a Hub id.
    #[arg(long)]
    pub adapter: PathBuf,
    /// The revision of a Hub id `--adapter` (default `main`).
    #[arg(long)]
    pub adapter_revision: Option<String>,
    /// The merged model folder to write (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// The backend: flex, cpu, wgpu, vulkan, metal, cuda or tch, where compiled in (default:
    /// `PEFT_DEVICE` when set, else the first compiled in, flex in a default build).
    #[arg(long)]
    pub device: Option<peft::device::Backend>,
}

/// Runs `peft merge`.
pub fn run(mut args: Args) -> Result<()> {
    if args.out.exists() && std::fs::read_dir(&args.out).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty: pick a new --out folder", args.out.display());
    }
    let device = peft::device::Backend::chosen(args.device)?.device()?;
    let (given_base, given_adapter) = (args.base.clone(), args.adapter.clone());
    args.base = crate::hub::model(&args.base, args.revision.as_deref())?;
    args.adapter = crate::hub::adapter(&args.adapter, args.adapter_revision.as_deref())?;
    let adapters = [args.adapter.clone()];
    let spec = LoadSpec { model: &args.base, adapters: &adapters, adapter_name: None, head: None };
    let merged = load(&spec, &device)?.merged()?;
    // Written to a temporary sibling and renamed, so a failure leaves no half-written folder.
    let staging = args.out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    peft::io::export::write_model(&merged, &staging)?;
    let gguf = crate::models::is_gguf(&args.base);
    if gguf {
        write_gguf_side_files(&merged, &args.base, &staging)?;
    }
    // The base's config and its side files (tokenizer, generation settings) travel along.
    for name in std::iter::once(&"config.json").chain(peft::io::hub::MODEL_SIDE_FILES) {
        let from = args.base.join(name);
        if from.is_file() {
            std::fs::copy(&from, staging.join(name)).with_context(|| format!("cannot copy {}", from.display()))?;
        }
    }
    if args.out.exists() {
        std::fs::remove_dir(&args.out).with_context(|| format!("cannot replace {}", args.out.display()))?;
    }
    std::fs::rename(&staging, &args.out).with_context(|| format!("cannot move the merged model to {}", args.out.display()))?;
    println!("merged {} into {} -> {}", given_adapter.display(), given_base.display(), args.out.display());
    if gguf {
        // Rounding the merged weights back into 4-bit blocks would lose most of the adapter's
        // update, so the folder is a dequantized model; quantize it again with llama.cpp's tools.
        println!("the GGUF base is written dequantized: model.safetensors holds f32 weights (not requantized), with config.json and tokenizer.json from the file");
    }
    Ok(())
}

/// A GGUF base has no config.json or tokenizer.json beside it: both are written from the file,
/// so transformers loads the merged folder.
fn write_gguf_side_files(merged: &peft::models::auto::AutoModel, base: &std::path::Path, staging: &std::path::Path) -> Result<()> {
    let peft::models::auto::AutoModel::Llama(model) = merged else {
        bail!("{} loaded as another family than Llama", base.display());
    };
    let mut config = serde_json::to_value(model.config())?;
    config["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    std::fs::write(staging.join("config.json"), serde_json::to_string_pretty(&config)?).context("cannot write config.json")?;
    let tokenizer = peft::models::tokenizer::Tokenizer::from_gguf(base)?;
    tokenizer
        .inner()
        .save(staging.join("tokenizer.json"), true)
        .map_err(|e| anyhow::anyhow!("cannot write tokenizer.json: {e}"))?;
    Ok(())
}
