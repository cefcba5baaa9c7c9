//! Merging adapters into the base weights, unmerging them, and unloading.

use peft_core::{AdapterSites, Error, Result, SiteMut};

use crate::model::{PeftModel, remove_everywhere};

impl<M: AdapterSites> PeftModel<M> {
    /// Folds the named adapters into the base weights: the forward then costs what the base
    /// model's does. [`PeftModel::unmerge_adapters`] takes them out again.
    pub fn merge_adapters(&mut self, names: &[&str]) -> Result<()> {
        for name in names {
            self.entry(name)?;
        }
        let mut error = None;
        self.base_model.visit_sites_mut(&mut |_, site| {
            if error.is_some() {
                return;
            }
            // Only the adapters this site holds: an adapter need not target every site.
            let result = match site {
                SiteMut::Linear(s) => present(names, |n| s.adapters.get(n).is_some()).try_for_each(|n| s.merge_adapter(n)),
                SiteMut::Embedding(s) => present(names, |n| s.adapters.get(n).is_some()).try_for_each(|n| s.merge_adapter(n)),
                SiteMut::Conv1d(s) => present(names, |n| s.adapters.get(n).is_some()).try_for_each(|n| s.merge_adapter(n)),
                SiteMut::Conv2d(s) => present(names, |n| s.adapters.get(n).is_some()).try_for_each(|n| s.merge_adapter(n)),
            };
            if let Err(e) = result {
                error = Some(e);
            }
        });
        error.map_or(Ok(()), Err)
    }

    /// Merges the active adapters.
    pub fn merge_adapter(&mut self) -> Result<()> {
        let active = self.registry.active.clone();
        self.merge_adapters(&active.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Takes every merged adapter back out of the base weights, last merged first.
    pub fn unmerge_adapters(&mut self) -> Result<()> {
        let mut error = None;
        self.base_model.visit_sites_mut(&mut |_, site| {
            let result = match site {
                SiteMut::Linear(s) => unmerge_all(s.adapters.merged().to_vec(), |n| s.unmerge_adapter(n)),
                SiteMut::Embedding(s) => unmerge_all(s.adapters.merged().to_vec(), |n| s.unmerge_adapter(n)),
                SiteMut::Conv1d(s) => unmerge_all(s.adapters.merged().to_vec(), |n| s.unmerge_adapter(n)),
                SiteMut::Conv2d(s) => unmerge_all(s.adapters.merged().to_vec(), |n| s.unmerge_adapter(n)),
            };
            if let Err(e) = result {
                error.get_or_insert(e);
            }
        });
        error.map_or(Ok(()), Err)
    }

    /// Merges the active adapters and removes every adapter: a plain model with the adapted
    /// weights, as `merge_and_unload()` in Python.
    pub fn merge_and_unload(mut self) -> Result<M> {
        if self.registry.disabled {
            return Err(Error::InvalidState("adapters are disabled; enable them before merging".into()));
        }
        self.merge_adapter()?;
        for name in self.adapter_names() {
            remove_everywhere(&mut self.base_model, &name);
        }
        Ok(self.base_model)
    }
}

fn unmerge_all(merged: Vec<String>, mut unmerge: impl FnMut(&str) -> Result<()>) -> Result<()> {
    merged.iter().rev().try_for_each(|n| unmerge(n))
}

/// The names among `names` a site holds, collected first so the site can then be borrowed mutably.
fn present<'a>(names: &[&'a str], holds: impl Fn(&str) -> bool) -> std::vec::IntoIter<&'a str> {
    names.iter().copied().filter(|n| holds(n)).collect::<Vec<_>>().into_iter()
}
