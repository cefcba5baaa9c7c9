//! Saving what `peft train` fitted: as it is, or, for PiSSA and OLoRA, converted to plain LoRA.

use anyhow::{Context, Result};
use peft::core::AdapterSites;
use peft::io::card::TrainingSummary;
use peft::{InitLoraWeights, PeftConfig, PeftModel};
use std::path::Path;

/// The adapter before training, kept only when its initialisation changed the base weights
/// (PiSSA, OLoRA): the trained adapter is then saved as the plain LoRA update it made to the
/// *original* base (rank `2 r`), which loads anywhere, here and in Python, and combines with
/// other adapters. A PiSSA adapter saved as it is would need its residual base to be rebuilt on
/// load, which a randomised `pissa_niter_K` cannot do exactly.
pub struct Start(Option<tempfile::TempDir>);

impl Start {
    /// Remembers adapter `default` before training, when it needs converting at the end.
    pub fn remember<M: AdapterSites>(model: &PeftModel<M>) -> Result<Start> {
        let decomposes = model
            .adapter_names()
            .iter()
            .filter_map(|name| model.peft_config(name).ok())
            .any(|config| matches!(config, PeftConfig::Lora(c) if c.init_lora_weights.decomposes_base()));
        if !decomposes {
            return Ok(Start(None));
        }
        let dir = tempfile::tempdir().context("cannot create a temporary folder for the adapter before training")?;
        model.save_pretrained(dir.path())?;
        Ok(Start(Some(dir)))
    }

    /// Saves `trained` in `output`, with `summary` in its model card.
    pub fn save<M: AdapterSites>(&self, trained: &PeftModel<M>, output: &Path, summary: &TrainingSummary) -> Result<()> {
        match &self.0 {
            None => trained.save_pretrained_with_summary(output, summary)?,
            Some(initial) => {
                trained.save_pretrained_as_lora_with_summary(output, initial.path(), summary)?;
                let init = trained.peft_config("default").ok().and_then(|c| match c {
                    PeftConfig::Lora(c) => Some(c.init_lora_weights.clone()),
                    _ => None,
                });
                let name = if matches!(init, Some(InitLoraWeights::Olora)) { "OLoRA" } else { "PiSSA" };
                println!("the {name} adapter is saved as plain LoRA of twice its rank, for the unchanged base model");
            }
        }
        Ok(())
    }
}
