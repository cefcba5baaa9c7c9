//! `PeftModel`: a model with named adapters, and `get_peft_model`.

use burn::module::Module;
use indexmap::IndexMap;
use peft_core::adapted::{MixedBatch, check_name};
use peft_core::{AdapterSites, BASE_ONLY, Error, PeftConfig, Result};

use crate::methods::{Injection, inject_method};
use crate::saved::attach_modules_to_save;
use crate::tensors::TensorMap;

/// What the model knows of one adapter besides its weights.
#[derive(Clone, Debug)]
pub(crate) struct AdapterEntry {
    pub(crate) config: PeftConfig,
    /// Sites that hold the method's adapter.
    pub(crate) targeted: Vec<String>,
    /// Modules trained in full (`modules_to_save`), by module path; their sites hold copies.
    pub(crate) saved: Vec<String>,
}

/// The adapters of a [`PeftModel`] and which of them the forward uses.
#[derive(Clone, Debug, Default)]
pub struct AdapterRegistry {
    pub(crate) entries: IndexMap<String, AdapterEntry>,
    pub(crate) active: Vec<String>,
    pub(crate) disabled: bool,
}

/// A model with one or more named adapters, as the Python library's `PeftModel`.
///
/// It is a Burn module, so optimizers, records and device moves work on it directly; only the
/// active adapter's parameters (plus the biases its config names) require gradients. The wrapped
/// model is `base_model`, and its own forward functions run with the adapters applied.
#[derive(Module, Debug)]
pub struct PeftModel<M: AdapterSites> {
    /// The model, with adapters attached at its sites.
    pub base_model: M,
    /// The adapters' configs and the active set.
    #[module(skip)]
    pub registry: AdapterRegistry,
}

/// Wraps `model` with a new adapter named `default` built from `config`, as the Python library's
/// `get_peft_model`: only the adapter (and what the config trains along) requires gradients.
///
/// Fails, leaving nothing attached, when the config is invalid or targets nothing.
pub fn get_peft_model<M: AdapterSites>(model: M, config: impl Into<PeftConfig>) -> Result<PeftModel<M>> {
    let mut peft = PeftModel { base_model: model, registry: AdapterRegistry::default() };
    peft.add_adapter(peft_io::adapter::DEFAULT_ADAPTER, config)?;
    Ok(peft)
}

impl<M: AdapterSites> PeftModel<M> {
    /// Adds a new adapter `name` built from `config` and makes it the active one.
    pub fn add_adapter(&mut self, name: &str, config: impl Into<PeftConfig>) -> Result<()> {
        self.attach(name, config.into(), None)?;
        self.set_adapter(name)
    }

    /// Attaches adapter `name`, from `tensors` when given, without changing the active set.
    ///
    /// The model is unchanged on error: the method and the `modules_to_save` copies are planned
    /// and checked before anything is attached, and undone if a later step fails.
    pub(crate) fn attach(&mut self, name: &str, mut config: PeftConfig, tensors: Option<&TensorMap>) -> Result<()> {
        check_name(name)?;
        if self.registry.entries.contains_key(name) {
            return Err(Error::InvalidAdapterName { name: name.into(), reason: "is already used by this model" });
        }
        complete_modules_to_save(&mut config, &self.base_model);
        complete_target_modules(&mut config, &self.base_model)?;
        let Injection { targeted, mut consumed } = inject_method(&mut self.base_model, &config, name, tensors)?;
        let to_save = config.modules_to_save();
        let saved = match attach_modules_to_save(&mut self.base_model, &to_save, name, tensors) {
            Ok((saved, keys)) => {
                consumed.extend(keys);
                saved
            }
            Err(e) => {
                remove_everywhere(&mut self.base_model, name);
                return Err(e);
            }
        };
        let entry = AdapterEntry { config, targeted, saved };
        if let Some(tensors) = tensors {
            // Biases change the base model: check everything before writing any.
            let planned = crate::bias::plan_biases(&self.base_model, &entry, tensors, &mut consumed)
                .and_then(|planned| check_all_consumed(tensors, &consumed).map(|_| planned));
            match planned {
                Ok(planned) => crate::bias::apply_biases(&mut self.base_model, planned),
                Err(e) => {
                    remove_everywhere(&mut self.base_model, name);
                    return Err(e);
                }
            }
        }
        self.registry.entries.insert(name.to_string(), entry);
        Ok(())
    }

    /// Makes `name` the only active adapter (and the one that trains).
    pub fn set_adapter(&mut self, name: &str) -> Result<()> {
        self.set_adapters(&[name])
    }

    /// Activates several adapters at once: their outputs add up, and all of them train.
    pub fn set_adapters(&mut self, names: &[&str]) -> Result<()> {
        for name in names {
            self.entry(name)?;
        }
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.registry.active = names.clone();
        self.base_model.visit_sites_mut(&mut |_, mut site| site.set_active(&names));
        self.refresh_trainable();
        Ok(())
    }

    /// Makes adapter `name` trainable (or frozen), as `is_trainable=True` when loading in Python:
    /// adapters loaded from a folder start frozen (`inference_mode`).
    pub fn set_trainable(&mut self, name: &str, trainable: bool) -> Result<()> {
        self.entry(name)?;
        if let Some(entry) = self.registry.entries.get_mut(name) {
            entry.config.set_inference_mode(!trainable);
        }
        self.refresh_trainable();
        Ok(())
    }

    /// The active adapters.
    pub fn active_adapters(&self) -> &[String] {
        &self.registry.active
    }

    /// Every adapter name, in the order added.
    pub fn adapter_names(&self) -> Vec<String> {
        self.registry.entries.keys().cloned().collect()
    }

    /// The config of adapter `name`.
    pub fn peft_config(&self, name: &str) -> Result<&PeftConfig> {
        Ok(&self.entry(name)?.config)
    }

    /// Module paths adapter `name` is attached to: the method's sites, then the modules copied
    /// for `modules_to_save` (`classifier`, whose sites may be `classifier.dense`, ...).
    pub fn targeted_modules(&self, name: &str) -> Result<Vec<String>> {
        let e = self.entry(name)?;
        Ok(e.targeted.iter().chain(&e.saved).cloned().collect())
    }

    /// Removes adapter `name` from every site. The active set loses it too.
    pub fn delete_adapter(&mut self, name: &str) -> Result<()> {
        self.entry(name)?;
        remove_everywhere(&mut self.base_model, name);
        self.registry.entries.shift_remove(name);
        let remaining: Vec<String> = self.registry.active.iter().filter(|n| *n != name).cloned().collect();
        let refs: Vec<&str> = remaining.iter().map(String::as_str).collect();
        self.set_adapters(&refs)
    }

    /// Turns every adapter off (the base model alone) or back on.
    pub fn set_adapters_disabled(&mut self, disabled: bool) {
        self.registry.disabled = disabled;
        self.base_model.visit_sites_mut(&mut |_, mut site| site.set_disabled(disabled));
    }

    /// Runs `f` with the adapters turned off, as the Python library's `disable_adapter()` context.
    ///
    /// The previous state comes back when `f` returns, and also when it panics.
    pub fn with_adapters_disabled<T>(&mut self, f: impl FnOnce(&M) -> T) -> T {
        let was = self.registry.disabled;
        self.set_adapters_disabled(true);
        let guard = RestoreDisabled { model: self, was };
        f(&guard.model.base_model)
    }

    /// Sets one adapter per batch row for the next forwards (`"__base__"` for the base alone), or
    /// clears the choice with `None`: a mixed-adapter batch, as `adapter_names=` in Python.
    /// [`PeftModel::with_batch_adapters`] does the same for one closure and reports every error.
    ///
    /// Where each mistake is caught (the forward functions return tensors, not results):
    /// - setting fails, changing nothing, with [`Error::UnknownAdapter`] for a name the model
    ///   lacks and [`Error::MergedAdaptersInMixedBatch`] while an adapter is merged (as the
    ///   Python library refuses: the merged update would reach every row);
    /// - a forward whose batch has another number of rows than names gives the base output at
    ///   each layer and records the size; clearing (`None`) then returns
    ///   [`Error::BatchAdaptersMismatch`] (the rows are cleared all the same).
    ///
    /// While rows are set, merging is refused ([`Error::InvalidState`]).
    pub fn set_batch_adapters(&mut self, rows: Option<&[&str]>) -> Result<()> {
        match rows {
            Some(names) => self.set_mixed_batch(names).map(|_| ()),
            None => clear_rows(&mut self.base_model).map_or(Ok(()), |batch| batch.check()),
        }
    }

    /// Runs `f` on a mixed-adapter batch: row `i` of every input uses adapter `rows[i]`
    /// (`"__base__"`: the base model alone), as `adapter_names=` in Python.
    ///
    /// # Errors
    /// Before `f` runs, as [`PeftModel::set_batch_adapters`]: [`Error::UnknownAdapter`] and
    /// [`Error::MergedAdaptersInMixedBatch`]. After it, [`Error::BatchAdaptersMismatch`] when a
    /// forward in `f` saw a batch of another size than `rows.len()` (its output, which used the
    /// base model for that layer, is dropped).
    ///
    /// The rows are cleared when `f` returns, and also when it panics.
    pub fn with_batch_adapters<T>(&mut self, rows: &[&str], f: impl FnOnce(&M) -> T) -> Result<T> {
        let batch = self.set_mixed_batch(rows)?;
        let out = {
            let guard = ClearRows(&mut self.base_model);
            f(&*guard.0)
        };
        batch.check()?;
        Ok(out)
    }

    /// Checks `names` and sets them on every site; on error nothing is set.
    fn set_mixed_batch(&mut self, names: &[&str]) -> Result<MixedBatch> {
        for name in names {
            if *name != BASE_ONLY {
                self.entry(name)?;
            }
        }
        let mut merged = None;
        self.base_model.visit_sites(&mut |path, site| {
            let names = site.merged();
            if merged.is_none() && !names.is_empty() {
                merged = Some(Error::MergedAdaptersInMixedBatch { path: path.to_string(), merged: names });
            }
        });
        if let Some(e) = merged {
            return Err(e);
        }
        let batch = MixedBatch::new(names);
        let mut error = None;
        self.base_model.visit_sites_mut(&mut |path, mut site| {
            if let Err(e) = site.set_rows(Some(&batch), path) {
                error.get_or_insert(e);
            }
        });
        if let Some(e) = error {
            // Unreachable after the check above; kept so a failure never leaves rows half set.
            clear_rows(&mut self.base_model);
            return Err(e);
        }
        Ok(batch)
    }

    /// The wrapped model, with adapters.
    pub fn model(&self) -> &M {
        &self.base_model
    }

    /// Removes every adapter without merging: the base model as it was.
    pub fn unload(mut self) -> M {
        for name in self.adapter_names() {
            remove_everywhere(&mut self.base_model, &name);
        }
        self.base_model
    }

    pub(crate) fn entry(&self, name: &str) -> Result<&AdapterEntry> {
        self.registry.entries.get(name).ok_or_else(|| Error::UnknownAdapter {
            name: name.into(),
            available: self.registry.entries.keys().cloned().collect(),
        })
    }
}

/// Adds the task's default `modules_to_save` (SEQ_CLS: `classifier`, `score`) as the Python library does.
fn complete_modules_to_save<M: AdapterSites>(config: &mut PeftConfig, model: &M) {
    let Some(task) = config.task_type() else { return };
    let defaults = model.default_modules_to_save(task);
    if defaults.is_empty() {
        return;
    }
    let list = config.modules_to_save_mut().get_or_insert_with(Vec::new);
    for d in defaults {
        if !list.contains(&d) {
            list.push(d);
        }
    }
}

/// Fills an unset `target_modules` with the architecture's defaults, as the Python library does
/// (the saved `adapter_config.json` then lists them).
fn complete_target_modules<M: AdapterSites>(config: &mut PeftConfig, model: &M) -> Result<()> {
    let PeftConfig::Lora(lora) = config;
    if !lora.target_modules.is_none() {
        return Ok(());
    }
    let defaults = model.default_target_modules();
    if defaults.is_empty() {
        return Err(Error::config(
            "target_modules",
            "null (this architecture has no default)",
            "name the layers to adapt, e.g. [\"q_proj\", \"v_proj\"], or \"all-linear\"",
        ));
    }
    lora.target_modules = peft_core::TargetModules::Names(defaults);
    Ok(())
}

fn check_all_consumed(tensors: &TensorMap, consumed: &[String]) -> Result<()> {
    let left: Vec<String> = tensors.keys().filter(|k| !consumed.contains(k)).take(8).cloned().collect();
    if left.is_empty() {
        return Ok(());
    }
    Err(Error::UnexpectedTensors {
        file: peft_io::adapter::WEIGHTS_FILE.into(),
        keys: left,
        fix: "the adapter was trained on a model with other module names or another config: check base_model_name_or_path".into(),
    })
}

/// Clears every site's mixed-batch rows; returns the batch that was set, if any.
fn clear_rows<M: AdapterSites>(model: &mut M) -> Option<MixedBatch> {
    let mut batch = None;
    model.visit_sites_mut(&mut |path, mut site| {
        if batch.is_none() {
            batch = site.mixed_batch();
        }
        // Clearing cannot fail: only setting checks for merged adapters.
        let _ = site.set_rows(None, path);
    });
    batch
}

/// Clears the mixed-batch rows when dropped, so a panicking closure leaves none set.
struct ClearRows<'a, M: AdapterSites>(&'a mut M);

impl<M: AdapterSites> Drop for ClearRows<'_, M> {
    fn drop(&mut self) {
        clear_rows(self.0);
    }
}

/// Puts the disabled flag back when dropped, so a panicking closure leaves the adapters as they were.
struct RestoreDisabled<'a, M: AdapterSites> {
    model: &'a mut PeftModel<M>,
    was: bool,
}

impl<M: AdapterSites> Drop for RestoreDisabled<'_, M> {
    fn drop(&mut self) {
        self.model.set_adapters_disabled(self.was);
    }
}

pub(crate) fn remove_everywhere<M: AdapterSites>(model: &mut M, name: &str) {
    model.visit_sites_mut(&mut |_, mut site| {
        site.remove_adapter(name);
    });
}
