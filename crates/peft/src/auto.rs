//! `AutoPeftModel*`: an adapter folder names its base model and task; load both in one call.

use burn::tensor::Device;
use peft_core::{Error, PeftConfig, Result};
use peft_models::auto::AutoModel;
use std::path::{Path, PathBuf};

use crate::PeftModel;

impl PeftModel<AutoModel> {
    /// Loads the base model the adapter's `adapter_config.json` names in
    /// `base_model_name_or_path`, with the head its `task_type` asks for, then the adapter
    /// (named `default`) — the Python library's `AutoPeftModel*.from_pretrained`.
    ///
    /// The Hub is not reached: the base must be a folder, found as written (relative to the
    /// working directory), or relative to the adapter folder or any folder above it.
    ///
    /// # Errors
    /// [`Error::InvalidState`] when the config names no base or no such folder exists (pass it
    /// with [`PeftModel::from_pretrained_auto_with_base`]); the loading errors of the base and
    /// the adapter.
    pub fn from_pretrained_auto(adapter_dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let adapter_dir = adapter_dir.as_ref();
        let config = PeftConfig::from_dir(adapter_dir)?;
        let base = resolve_base(adapter_dir, &config)?;
        Self::from_pretrained_auto_with_base(adapter_dir, base, device)
    }

    /// Like [`PeftModel::from_pretrained_auto`] with the base model folder given.
    pub fn from_pretrained_auto_with_base(adapter_dir: impl AsRef<Path>, base_dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let config = PeftConfig::from_dir(adapter_dir.as_ref())?;
        let model = AutoModel::from_pretrained_for_task(base_dir, config.task_type(), device)?;
        PeftModel::from_pretrained(model, adapter_dir)
    }
}

/// The folder `base_model_name_or_path` names, searched as documented on `from_pretrained_auto`.
pub fn resolve_base(adapter_dir: &Path, config: &PeftConfig) -> Result<PathBuf> {
    let Some(name) = config.base_model_name_or_path() else {
        return Err(Error::InvalidState(format!(
            "{} names no base model (`base_model_name_or_path` is unset): load the base yourself and use PeftModel::from_pretrained",
            adapter_dir.join(peft_core::CONFIG_FILE).display()
        )));
    };
    let written = PathBuf::from(name);
    let candidates = std::iter::once(written.clone()).chain(adapter_dir.ancestors().map(|a| a.join(&written)));
    for candidate in candidates {
        if candidate.join("config.json").is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::InvalidState(format!(
        "the base model `{name}` that {} names is not a folder here (as written, or under {} or a folder above it), and the Hub is not reached: download it and pass its folder to from_pretrained_auto_with_base (CLI: --model DIR)",
        adapter_dir.join(peft_core::CONFIG_FILE).display(),
        adapter_dir.display()
    )))
}
