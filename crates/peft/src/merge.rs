//! Merging adapters into the base weights, unmerging them, and unloading.

use peft_core::{AdapterSites, Error, Result};

use peft_core::attach::remove_adapter;

use crate::model::PeftModel;

impl<M: AdapterSites> PeftModel<M> {
    /// Folds the named adapters into the base weights: the forward then costs what the base
    /// model's does. [`PeftModel::unmerge_adapters`] takes them out again.
    ///
    /// All or nothing: on error (an unknown name, a mixed-adapter batch still set, a site that
    /// cannot merge) no site is changed.
    ///
    /// # Errors
    /// [`Error::UnknownAdapter`]; [`Error::Unsupported`] for a prompt-style (model-level) adapter,
    /// which has no weight to fold into (its virtual tokens are inputs, not weights).
    pub fn merge_adapters(&mut self, names: &[&str]) -> Result<()> {
        for name in names {
            self.entry(name)?;
            if self.model_adapters.get(name).is_some() {
                let method = self.entry(name)?.config.method_name().to_string();
                return Err(Error::Unsupported {
                    what: format!("merging the {method} adapter `{name}`: its virtual tokens are inputs of the model, not a change of its weights"),
                    supported: "merging layer methods (LoRA); keep a prompt adapter attached and serve it with PeftModel::forward / generate".into(),
                });
            }
        }
        // Burn modules clone cheaply (tensors are shared): the copy is what a failure restores.
        let before = self.base_model.clone();
        let mut error = None;
        self.base_model.visit_sites_mut(&mut |_, mut site| {
            if error.is_some() {
                return;
            }
            // Only the adapters this site holds: an adapter need not target every site.
            let held: Vec<&str> = names.iter().copied().filter(|n| site.holds(n)).collect();
            let result = held.iter().try_for_each(|n| site.merge_adapter(n));
            if let Err(e) = result {
                error = Some(e);
            }
        });
        match error {
            Some(e) => {
                self.base_model = before;
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Merges the active adapters.
    pub fn merge_adapter(&mut self) -> Result<()> {
        let active = self.registry.active.clone();
        self.merge_adapters(&active.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Takes every merged adapter back out of the base weights, last merged first.
    ///
    /// All or nothing: when a site cannot unmerge (a `modules_to_save` copy replaced its layer),
    /// no site is changed.
    pub fn unmerge_adapters(&mut self) -> Result<()> {
        let before = self.base_model.clone();
        let mut error = None;
        self.base_model.visit_sites_mut(&mut |_, mut site| {
            // Last merged first, so each unmerge sees the weight its merge produced.
            let result = site.merged().iter().rev().try_for_each(|n| site.unmerge_adapter(n));
            if let Err(e) = result {
                error.get_or_insert(e);
            }
        });
        match error {
            Some(e) => {
                self.base_model = before;
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Merges the active adapters and removes every adapter: a plain model with the adapted
    /// weights, as `merge_and_unload()` in Python.
    pub fn merge_and_unload(mut self) -> Result<M> {
        if self.registry.disabled {
            return Err(Error::InvalidState("adapters are disabled; enable them before merging".into()));
        }
        self.merge_adapter()?;
        for name in self.adapter_names() {
            remove_adapter(&mut self.base_model, &name);
        }
        Ok(self.base_model)
    }
}
