//! What the `peft` command's tests share: the fixtures and assets, running the binary, and a
//! word-level tokenizer for the tiny fixture models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The committed fixtures.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The real models and data: `$PEFT_ASSETS` (set by `cargo xtask test`), else the workspace's
/// `target/assets` (`cargo xtask assets`).
pub fn assets() -> PathBuf {
    std::env::var_os("PEFT_ASSETS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/assets"))
}

/// `p` as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `peft` with `args`.
pub fn peft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peft")).args(args).output().expect("the peft binary runs")
}

/// The standard output of a run that must succeed.
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error of a run that must fail with one line on standard error.
pub fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "should fail: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

/// A word-level `tokenizer.json`: `w1` .. `w95` are ids 1..95, split on whitespace.
pub fn word_tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), 0.into());
    for i in 1..96 {
        vocab.insert(format!("w{i}"), i.into());
    }
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    })
    .to_string()
}

/// [`word_tokenizer_json`] written as `dir/tokenizer.json`; returns its path.
pub fn word_tokenizer(dir: &Path) -> PathBuf {
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, word_tokenizer_json()).expect("write tokenizer");
    path
}
