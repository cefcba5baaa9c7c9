//! `add_weighted_ia3_adapter`: a new IA3 adapter whose vectors are the weighted sum of others'.

use peft_core::{AdapterSites, Error, PeftConfig, Result};
use peft_ia3::Source;

use crate::model::{AdapterEntry, PeftModel};

impl<M: AdapterSites> PeftModel<M> {
    /// Adds IA3 adapter `new_name` with `l = sum_i w_i l_i` over the `(name, w_i)` IA3 adapters at
    /// every layer holding one of them, as the Python library's `add_weighted_adapter` for IA3; its
    /// config is the first's with the union of the `target_modules` and `feedforward_modules`. It
    /// is not activated.
    ///
    /// # Errors
    /// [`Error::InvalidAdapterName`] when `new_name` is taken, [`Error::UnknownAdapter`],
    /// [`Error::WrongMethod`] for an adapter that is not IA3, and the errors of
    /// [`peft_ia3::add_weighted_adapter`]; nothing is added on error.
    pub fn add_weighted_ia3_adapter(&mut self, adapters: &[(&str, f64)], new_name: &str) -> Result<()> {
        if self.registry.entries.contains_key(new_name) {
            return Err(Error::InvalidAdapterName { name: new_name.into(), reason: "is already used by this model" });
        }
        let mut configs = Vec::new();
        for (name, _) in adapters {
            match &self.entry(name)?.config {
                PeftConfig::Ia3(c) => configs.push(c.clone()),
                other => {
                    return Err(Error::WrongMethod { expected: "IA3".into(), found: other.method_name().into(), path: format!("adapter `{name}`").into() });
                }
            }
        }
        let sources: Vec<Source<'_>> =
            adapters.iter().zip(&configs).map(|((name, weight), config)| Source { name, weight: *weight, config }).collect();
        let config = peft_ia3::add_weighted_adapter(&mut self.base_model, &sources, new_name)?;
        let mut targeted = Vec::new();
        self.base_model.visit_sites(&mut |path, site| {
            if site.holds(new_name) {
                targeted.push(path.to_string());
            }
        });
        self.registry.entries.insert(new_name.into(), AdapterEntry { config: config.into(), targeted, saved: Vec::new() });
        let active = self.registry.active.clone();
        self.set_adapters(&active.iter().map(String::as_str).collect::<Vec<_>>())
    }
}
