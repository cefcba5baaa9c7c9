//! What each backend needs before its tests run, installed by this tool, and the tests CI runs
//! on the backends other than `flex`.
//!
//! - `flex`: nothing (Burn's CPU backend, the default).
//! - `wgpu` / `vulkan`: a Vulkan driver. Where none is installed, Mesa's software one (lavapipe,
//!   Debian's `mesa-vulkan-drivers` and `libvulkan1`), so a machine without a GPU runs them too.
//! - `tch`: the libtorch inside PyPI's `torch` wheel, in its own virtual environment
//!   (`target/venv-tch`), at the version the `tch` crate binds (`torch-sys` 0.22: PyTorch 2.9.0).
//! - `cuda`, `metal`: the vendor's driver, which no tool can install; `cpu`: an LLVM/MLIR that
//!   Burn's build downloads (see `docs/backends.md`).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

/// The libtorch the `tch` crate (torch-sys 0.22) is built against.
const TORCH_FOR_TCH: &str = "torch==2.9.0";

/// The tests CI runs on a second backend (needs nextest): adapter sites and LoRA on the toy model against the
/// Python library, every method's layers, one model family end to end (Llama: logits, generation,
/// training), merge, save and load. As `(package, module)`: `None` is the library's unit tests,
/// `Some(module)` one file of the package's `tests/integration/` binary.
pub const CI_SUBSET: &[(&str, Option<&str>)] = &[
    ("peft-core", None),
    ("peft-lora", None),
    ("peft", Some("python_toy")),
    ("peft", Some("python_llama")),
    ("peft", Some("python_ia3")),
    ("peft", Some("python_prompt")),
    ("peft", Some("workflow")),
    ("peft", Some("atomic_save")),
    ("peft-models", Some("llama")),
];

/// Environment variables the backend's tests need, after installing what it lacks.
pub fn prepare(root: &Path, backend: &str) -> Result<Vec<(String, String)>> {
    match backend {
        "flex" => Ok(Vec::new()),
        "wgpu" | "vulkan" => {
            ensure_vulkan_driver()?;
            Ok(Vec::new())
        }
        "tch" => tch_environment(root),
        "cuda" | "metal" | "cpu" => {
            eprintln!("note: `{backend}` needs what this tool cannot install (docs/backends.md); trying the build as the machine is");
            Ok(Vec::new())
        }
        other => bail!("unknown backend `{other}`: flex, wgpu, vulkan, metal, cuda, cpu or tch"),
    }
}

/// Vulkan's loader and at least one driver (an ICD manifest); Mesa's software driver when there
/// is none, installed with apt where this runs as root.
fn ensure_vulkan_driver() -> Result<()> {
    if has_vulkan_driver() {
        return Ok(());
    }
    eprintln!("no Vulkan driver found: installing Mesa's software driver (lavapipe)");
    let as_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    let apt = |args: &[&str]| {
        let mut cmd = if as_root { Command::new("apt-get") } else { Command::new("sudo") };
        if !as_root {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "mesa-vulkan-drivers", "libvulkan1"])?;
    if !has_vulkan_driver() {
        bail!("Mesa's Vulkan driver is installed but no ICD manifest is under /usr/share/vulkan/icd.d");
    }
    Ok(())
}

fn has_vulkan_driver() -> bool {
    let loader = ["/usr/lib/x86_64-linux-gnu/libvulkan.so.1", "/usr/lib/aarch64-linux-gnu/libvulkan.so.1", "/usr/lib/libvulkan.so.1"]
        .iter()
        .any(|p| Path::new(p).exists());
    let icd = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .any(|e| e.path().extension().is_some_and(|x| x == "json"));
    loader && icd
}

/// A venv holding PyPI's torch wheel at the version `tch` binds, and what `torch-sys`'s build and
/// the test binaries need to find its libtorch.
fn tch_environment(root: &Path) -> Result<Vec<(String, String)>> {
    let venv = root.join("target/venv-tch");
    let python = venv.join("bin/python");
    let ready = venv.join(".peft-ready");
    if !(ready.is_file() && python.is_file()) {
        if !python.is_file() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        }
        run(Command::new(&python).args(["-m", "pip", "install", "--quiet", TORCH_FOR_TCH]))?;
        std::fs::write(&ready, TORCH_FOR_TCH).context("cannot mark the tch venv ready")?;
    }
    let torch_lib = site_packages(&venv)?.join("torch/lib");
    let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let library_path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", torch_lib.display()),
        _ => torch_lib.display().to_string(),
    };
    Ok(vec![
        ("LIBTORCH_USE_PYTORCH".into(), "1".into()),
        ("PATH".into(), path),
        ("LD_LIBRARY_PATH".into(), library_path),
    ])
}

fn site_packages(venv: &Path) -> Result<PathBuf> {
    let lib = venv.join("lib");
    std::fs::read_dir(&lib)
        .with_context(|| format!("cannot read {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("site-packages")))
        .find(|p| p.is_dir())
        .with_context(|| format!("no site-packages under {}", lib.display()))
}

/// A nextest filter that runs [`CI_SUBSET`] out of the workspace's test binaries. A filter
/// rather than a narrower build: the subset runs from the same build as the whole suite (Cargo
/// would resolve other features for fewer packages, and build Burn again).
pub fn subset_filter() -> String {
    CI_SUBSET
        .iter()
        .map(|(package, module)| match module {
            Some(module) => format!("(binary_id({package}::integration) & test(/^{module}::/))"),
            None => format!("binary_id({package})"),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
