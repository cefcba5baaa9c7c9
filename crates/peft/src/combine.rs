//! `add_weighted_adapter`: a new LoRA adapter from a weighted combination of existing ones.

use peft_core::{AdapterSites, Error, PeftConfig, Result};
use peft_lora::{Combination, Source};

use crate::model::{AdapterEntry, PeftModel};

impl<M: AdapterSites> PeftModel<M> {
    /// Adds adapter `new_name` combining `(name, weight)` LoRA adapters (see [`Combination`]);
    /// it is not activated. Fails, adding nothing, for unknown or non-LoRA adapters.
    ///
    /// IA3 adapters combine too, as the weighted sum of their vectors (only
    /// [`Combination::Linear`] applies; see [`PeftModel::add_weighted_ia3_adapter`]).
    pub fn add_weighted_adapter(&mut self, adapters: &[(&str, f64)], new_name: &str, how: Combination) -> Result<()> {
        if self.registry.entries.contains_key(new_name) {
            return Err(Error::InvalidAdapterName { name: new_name.into(), reason: "is already used by this model" });
        }
        #[cfg(feature = "ia3")]
        if let Some((first, _)) = adapters.first()
            && matches!(self.entry(first)?.config, PeftConfig::Ia3(_))
        {
            if how != Combination::Linear {
                return Err(Error::config("combination_type", format!("{how:?}"), "IA3 adapters combine as a weighted sum only: use Combination::Linear"));
            }
            return self.add_weighted_ia3_adapter(adapters, new_name);
        }
        let mut configs = Vec::new();
        for (name, _) in adapters {
            let config = match self.entry(name)?.config.clone() {
                PeftConfig::Lora(c) => c,
                other => {
                    return Err(Error::WrongMethod { expected: "LORA".into(), found: other.method_name().into(), path: format!("adapter `{name}`").into() });
                }
            };
            configs.push(config);
        }
        let sources: Vec<Source<'_>> = adapters
            .iter()
            .zip(&configs)
            .map(|((name, weight), config)| Source { name, weight: *weight, config })
            .collect();
        // All or nothing: the sites are planned before any is changed.
        let config = peft_lora::add_weighted_adapter(&mut self.base_model, &sources, new_name, how)?;
        let targeted = self.site_paths_with(new_name);
        self.registry.entries.insert(new_name.into(), AdapterEntry { config: config.into(), targeted, saved: Vec::new() });
        let active = self.registry.active.clone();
        self.set_adapters(&active.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn site_paths_with(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.base_model.visit_sites(&mut |path, site| {
            if site.holds(name) {
                out.push(path.to_string());
            }
        });
        out
    }
}
