//! Where the model tests find their inputs: the committed fixtures and the real assets.

use std::path::PathBuf;

/// The committed fixtures (`fixtures/` at the workspace root).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The real models and data: `$PEFT_ASSETS` (set by `cargo xtask test`), else the workspace's
/// `target/assets` (`cargo xtask assets`).
pub fn assets() -> PathBuf {
    std::env::var_os("PEFT_ASSETS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/assets"))
}
