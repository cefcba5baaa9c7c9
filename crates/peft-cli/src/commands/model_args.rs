//! The flags every command that runs a model shares.

use std::path::PathBuf;

/// Which model, which adapters, which backend.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// The model folder (config.json + model.safetensors), or a Hub id (`org/name`) read from
    /// the local Hugging Face cache (downloaded when missing and a network is there).
    #[arg(long)]
    pub model: PathBuf,
    /// The revision of a Hub id `--model` (branch, tag or commit; default `main`).
    #[arg(long)]
    pub revision: Option<String>,
    /// Adapter folders or Hub ids to load, in order (the first is named `default`, the others
    /// after their folder or repository).
    #[arg(long)]
    pub adapter: Vec<PathBuf>,
    /// The revision of Hub id `--adapter`s (default `main`).
    #[arg(long)]
    pub adapter_revision: Option<String>,
    /// The adapter to activate (default: the first).
    #[arg(long)]
    pub adapter_name: Option<String>,
    /// Merge the active adapter into the weights before running.
    #[arg(long)]
    pub merge: bool,
    /// The backend: flex, cpu, wgpu, vulkan, metal, cuda or tch, where compiled in (default:
    /// `PEFT_DEVICE` when set, else the first compiled in, flex in a default build).
    #[arg(long)]
    pub device: Option<peft::device::Backend>,
    /// The float type the base weights load in (each converted as it is read); adapters stay f32.
    #[arg(long, value_enum, default_value_t)]
    pub dtype: crate::dtype::BaseDtype,
}

impl ModelArgs {
    /// Replaces Hub ids in `--model` and `--adapter` by their folders in the local cache
    /// (downloading what is missing when a network is there); folders stay as given.
    pub fn resolve_hub(&mut self) -> anyhow::Result<()> {
        self.model = crate::hub::model(&self.model, self.revision.as_deref())?;
        for adapter in &mut self.adapter {
            *adapter = crate::hub::adapter(adapter, self.adapter_revision.as_deref())?;
        }
        Ok(())
    }

    /// What [`crate::models::load`] needs, with a head asked for or not.
    pub fn spec(&self, head: Option<peft::models::auto::Head>) -> crate::models::LoadSpec<'_> {
        crate::models::LoadSpec { model: &self.model, adapters: &self.adapter, adapter_name: self.adapter_name.as_deref(), head }
    }

    /// Loads the model with its adapters, merged when `--merge` is given.
    pub fn load(&self, head: Option<peft::models::auto::Head>, device: &peft::burn::tensor::Device) -> anyhow::Result<crate::models::Loaded> {
        let loaded = self.dtype.load(|| crate::models::load(&self.spec(head), device))?;
        if self.merge { Ok(crate::models::Loaded::Base(loaded.merged()?)) } else { Ok(loaded) }
    }
}
