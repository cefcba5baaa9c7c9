//! `PeftModel`: a model with named adapters, and `get_peft_model`.

use burn::module::Module;
use indexmap::IndexMap;
use peft_core::adapted::{Erased, MixedBatch, check_name};
use peft_core::attach::{Attached, SiteMethod, attach, remove_adapter};
use peft_core::{AdapterSet, AdapterSites, BASE_ONLY, Error, ModelAdapter, PeftConfig, Result};

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
    /// Whether AdaLoRA training calls the rank allocator.
    #[cfg(feature = "lora")]
    pub(crate) adalora: crate::adalora::AllocationWatch,
}

/// A model with one or more named adapters, as the Python library's `PeftModel`.
///
/// It is a Burn module, so optimizers, records and device moves work on it directly; only the
/// active adapters' parameters (plus what their configs train along) require gradients. Layer
/// adapters live at the wrapped model's sites; adapters of the whole model (prompt tables,
/// prefix encoders) live in the model-level set. [`PeftModel::forward`] and
/// [`PeftModel::generate`] run the task with every active adapter applied.
#[derive(Module, Debug)]
pub struct PeftModel<M: AdapterSites> {
    /// The model, with adapters attached at its sites.
    pub(crate) base_model: M,
    /// Adapters that belong to no layer, by adapter name.
    pub(crate) model_adapters: AdapterSet<dyn ModelAdapter>,
    /// The adapters' configs and the active set.
    #[module(skip)]
    pub(crate) registry: AdapterRegistry,
}

/// Wraps `model` with a new adapter named `default` built from `config`, as the Python library's
/// `get_peft_model`: only the adapter (and what the config trains along) requires gradients.
///
/// Fails, leaving nothing attached, when the config is invalid, targets nothing, or names a
/// method this build lacks (the error says which feature adds it).
pub fn get_peft_model<M: AdapterSites>(model: M, config: impl Into<PeftConfig>) -> Result<PeftModel<M>> {
    let mut peft = PeftModel::new(model);
    peft.add_adapter(peft_io::adapter::DEFAULT_ADAPTER, config)?;
    Ok(peft)
}

/// [`get_peft_model`] for a method of your own: `method` decides the sites and builds the
/// adapters; `config` (usually a [`peft_core::CustomConfig`]) is what the adapter folder records.
pub fn get_peft_model_with_method<M: AdapterSites>(model: M, config: impl Into<PeftConfig>, method: &dyn SiteMethod) -> Result<PeftModel<M>> {
    let mut peft = PeftModel::new(model);
    peft.add_adapter_with_method(peft_io::adapter::DEFAULT_ADAPTER, config, method)?;
    Ok(peft)
}

impl<M: AdapterSites> PeftModel<M> {
    /// `model` without adapters yet: add them with [`PeftModel::add_adapter`] or
    /// [`PeftModel::load_adapter`] (as the Python library's `from_pretrained(..., adapter_name=)`).
    pub fn new(model: M) -> Self {
        PeftModel { base_model: model, model_adapters: AdapterSet::default(), registry: AdapterRegistry::default() }
    }

    /// Adds a new adapter `name` built from `config` and makes it the active one.
    pub fn add_adapter(&mut self, name: &str, config: impl Into<PeftConfig>) -> Result<()> {
        self.attach(name, config.into(), None, None)?;
        self.set_adapter(name)
    }

    /// Adds adapter `name` of a method of your own: `method` says which sites it adapts and what
    /// it builds there; `config` (usually a [`peft_core::CustomConfig`]) is what
    /// [`PeftModel::save_pretrained`] writes. The adapter becomes the active one.
    pub fn add_adapter_with_method(&mut self, name: &str, config: impl Into<PeftConfig>, method: &dyn SiteMethod) -> Result<()> {
        self.attach(name, config.into(), None, Some(method))?;
        self.set_adapter(name)
    }

    /// Attaches adapter `name`, from `tensors` when given, without changing the active set;
    /// `method` overrides the built-in method of the config (methods of your own).
    ///
    /// The model is unchanged on error: the method and the `modules_to_save` copies are planned
    /// and checked before anything is attached, and undone if a later step fails.
    pub(crate) fn attach(&mut self, name: &str, mut config: PeftConfig, tensors: Option<&TensorMap>, method: Option<&dyn SiteMethod>) -> Result<()> {
        check_name(name)?;
        check_name_against_model(name, &self.base_model)?;
        if self.registry.entries.contains_key(name) {
            return Err(Error::InvalidAdapterName { name: name.into(), reason: "is already used by this model" });
        }
        config.validate()?;
        if tensors.is_none() && config.base_model_name_or_path().is_none() {
            config.common_mut().base_model_name_or_path = self.base_model.name_or_path();
        }
        complete_modules_to_save(&mut config, &self.base_model);
        crate::methods::complete_config(&mut config, &self.base_model)?;
        if let Some(adapter) = crate::methods::model_adapter(&config, &self.base_model, tensors)? {
            return self.attach_model_level(name, config, adapter, tensors);
        }
        if let Some(tensors) = tensors {
            check_same_architecture(tensors, &config, &self.base_model)?;
        }
        let Attached { targeted, mut consumed } = match method {
            Some(m) => attach(&mut self.base_model, name, m, tensors)?,
            None => {
                let method = crate::methods::site_method(&config, &self.base_model)?;
                attach(&mut self.base_model, name, &*method, tensors)?
            }
        };
        let to_save = config.modules_to_save();
        let saved = match attach_modules_to_save(&mut self.base_model, &to_save, name, tensors) {
            Ok((saved, keys)) => {
                consumed.extend(keys);
                saved
            }
            Err(e) => {
                remove_adapter(&mut self.base_model, name);
                return Err(e);
            }
        };
        let entry = AdapterEntry { config, targeted, saved };
        // Biases and PiSSA/OLoRA change the base model: check everything before writing any.
        let planned = match tensors {
            Some(tensors) => crate::bias::plan_biases(&self.base_model, &entry, tensors, &mut consumed)
                .and_then(|planned| check_all_consumed(tensors, &consumed).map(|_| Some(planned))),
            None => Ok(None),
        };
        let finished = planned.and_then(|planned| {
            crate::methods::finish_attach(&entry.config, &mut self.base_model, name, tensors.is_none()).map(|_| planned)
        });
        match finished {
            Ok(Some(planned)) => crate::bias::apply_biases(&mut self.base_model, planned),
            Ok(None) => {}
            Err(e) => {
                remove_adapter(&mut self.base_model, name);
                return Err(e);
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
    ///
    /// # Errors
    /// [`Error::UnknownAdapter`]; [`Error::InvalidState`] when two of them are model-level
    /// adapters (prompt methods cannot be combined, as in the Python library).
    pub fn set_adapters(&mut self, names: &[&str]) -> Result<()> {
        for name in names {
            self.entry(name)?;
        }
        let model_level = names.iter().filter(|n| self.model_adapters.get(n).is_some()).count();
        if model_level > 1 {
            return Err(Error::InvalidState(format!(
                "{model_level} of the adapters {names:?} are prompt-style (model-level) adapters; activate one at a time"
            )));
        }
        // Python's AdaptionPromptModel swaps one adapter's attention wrappers in at a time.
        let llama_adapters: Vec<&str> = names.iter().copied().filter(|n| self.is_adaption_prompt(n)).collect();
        if llama_adapters.len() > 1 {
            return Err(Error::InvalidState(format!(
                "the LLaMA-Adapters (ADAPTION_PROMPT) {llama_adapters:?} cannot be active together; activate one at a time, as in the Python library"
            )));
        }
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.registry.active = names.clone();
        self.base_model.visit_sites_mut(&mut |_, mut site| site.set_active(&names));
        self.model_adapters.set_active(&names);
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
        remove_adapter(&mut self.base_model, name);
        self.model_adapters.remove(name);
        self.registry.entries.shift_remove(name);
        let remaining: Vec<String> = self.registry.active.iter().filter(|n| *n != name).cloned().collect();
        let refs: Vec<&str> = remaining.iter().map(String::as_str).collect();
        self.set_adapters(&refs)
    }

    /// Turns every adapter off (the base model alone) or back on.
    pub fn set_adapters_disabled(&mut self, disabled: bool) {
        self.registry.disabled = disabled;
        self.base_model.visit_sites_mut(&mut |_, mut site| site.set_disabled(disabled));
        self.model_adapters.set_disabled(disabled);
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
                if self.model_adapters.get(name).is_some() {
                    return Err(Error::InvalidState(format!(
                        "adapter `{name}` is a prompt-style (model-level) adapter; mixed-adapter batches take layer adapters only, as in the Python library"
                    )));
                }
                if self.is_adaption_prompt(name) {
                    return Err(Error::InvalidState(format!(
                        "adapter `{name}` is a LLaMA-Adapter (ADAPTION_PROMPT); mixed-adapter batches take LoRA-style layer adapters only, as in the Python library"
                    )));
                }
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

    /// The wrapped model, with its layer adapters attached.
    pub fn model(&self) -> &M {
        &self.base_model
    }

    /// Casts the base model's float weights to `dtype` (f16, bf16 to halve their memory), while
    /// the adapters and their `modules_to_save` copies stay in f32: what
    /// `model.to(torch.bfloat16)` on a frozen base with f32 adapters gives in PyTorch. Each
    /// adapted layer then runs its base in `dtype` and its adapters in f32; merging rounds once
    /// and unmerging restores the weights exactly (see [`peft_core::adapted::precision`]).
    pub fn cast_base_weights(mut self, dtype: burn::tensor::FloatDType) -> Self {
        self.base_model = peft_core::adapted::precision::cast_site_base_weights(self.base_model, dtype);
        self
    }

    /// The wrapped model, mutably (to change what adapters do not cover).
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.base_model
    }

    /// The wrapped model with its layer adapters still attached (they act on activations).
    ///
    /// # Errors
    /// [`Error::InvalidState`] when a model-level adapter (a prompt method) is attached: the
    /// wrapped model alone cannot apply it; keep the `PeftModel` and call its `forward`.
    pub fn into_model(self) -> Result<M> {
        if !self.model_adapters.is_empty() {
            return Err(Error::InvalidState(format!(
                "adapters {:?} belong to the whole model (prompt methods) and act only through PeftModel::forward / generate",
                self.model_adapters.names()
            )));
        }
        Ok(self.base_model)
    }

    /// The model-level adapters (prompt tables, prefix encoders) by name.
    pub fn model_adapters(&self) -> &AdapterSet<dyn ModelAdapter> {
        &self.model_adapters
    }

    /// Attaches a model-level adapter (a method crate's prompt table or encoder) under `name`
    /// with `config`; the adapter becomes active. Its parameters are ordinary Burn parameters of
    /// the `PeftModel` (path `model_adapters.<name>....`).
    pub fn add_model_adapter(&mut self, name: &str, config: impl Into<PeftConfig>, adapter: Erased<dyn ModelAdapter>) -> Result<()> {
        self.insert_model_adapter(name, config.into(), adapter)?;
        self.set_adapter(name)
    }

    /// Attaches a prompt-learning adapter and its task head's `modules_to_save` copies (SEQ_CLS:
    /// `classifier` / `score`, QA: `qa_outputs`), which the Python library keys
    /// `base_model.{path}.{tensor}` in these files ([`PROMPT_HEAD_PREFIX`]) besides
    /// `prompt_embeddings`.
    fn attach_model_level(&mut self, name: &str, config: PeftConfig, adapter: Erased<dyn ModelAdapter>, tensors: Option<&TensorMap>) -> Result<()> {
        check_name(name)?;
        let head_tensors: Option<TensorMap> = tensors.map(|t| {
            t.iter().filter_map(|(k, v)| k.strip_prefix(PROMPT_HEAD_PREFIX).map(|k| (k.to_string(), v.clone()))).collect()
        });
        let (saved, consumed) = attach_modules_to_save(&mut self.base_model, &config.modules_to_save(), name, head_tensors.as_ref())?;
        if let Some(tensors) = tensors {
            let mut consumed: Vec<String> = consumed.iter().map(|k| format!("{PROMPT_HEAD_PREFIX}{k}")).collect();
            consumed.extend(adapter.get().export().into_iter().map(|(k, _)| k));
            if let Err(e) = check_all_consumed(tensors, &consumed) {
                remove_adapter(&mut self.base_model, name);
                return Err(e);
            }
        }
        if let Err(e) = self.model_adapters.insert(name, adapter) {
            remove_adapter(&mut self.base_model, name);
            return Err(e);
        }
        self.registry.entries.insert(name.to_string(), AdapterEntry { config, targeted: Vec::new(), saved });
        Ok(())
    }

    pub(crate) fn insert_model_adapter(&mut self, name: &str, config: PeftConfig, adapter: Erased<dyn ModelAdapter>) -> Result<()> {
        check_name(name)?;
        if self.registry.entries.contains_key(name) {
            return Err(Error::InvalidAdapterName { name: name.into(), reason: "is already used by this model" });
        }
        self.model_adapters.insert(name, adapter)?;
        self.registry.entries.insert(name.to_string(), AdapterEntry { config, targeted: Vec::new(), saved: Vec::new() });
        Ok(())
    }

    /// Removes every adapter without merging: the base model as it was.
    pub fn unload(mut self) -> M {
        for name in self.adapter_names() {
            remove_adapter(&mut self.base_model, &name);
        }
        self.base_model
    }

    /// Whether adapter `name` is a LLaMA-Adapter (unknown names are not).
    fn is_adaption_prompt(&self, name: &str) -> bool {
        self.registry.entries.get(name).is_some_and(|e| matches!(e.config, PeftConfig::AdaptionPrompt(_)))
    }

    pub(crate) fn entry(&self, name: &str) -> Result<&AdapterEntry> {
        self.registry.entries.get(name).ok_or_else(|| Error::UnknownAdapter {
            name: name.into(),
            available: self.registry.entries.keys().cloned().collect(),
        })
    }
}

/// The prefix of a task head's tensors in a prompt-learning adapter file
/// (`base_model.classifier.weight`: the Python library wraps the model itself there, not a tuner).
pub(crate) const PROMPT_HEAD_PREFIX: &str = "base_model.";

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

/// Words a saved key is built from; an adapter named like one would make keys ambiguous.
const KEY_WORDS: &[&str] = &[
    "lora_A", "lora_B", "lora_E", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector", "ia3_l", "base_layer",
    "modules_to_save", "original_module", "ranknum",
];

/// Refuses adapter names that are a segment of one of the model's module paths (`q_proj`,
/// `layers`) or a word of the saved keys (`lora_A`, `base_layer`): as the Python library warns, such
/// a name makes module lookups and saved keys ambiguous.
fn check_name_against_model<M: AdapterSites>(name: &str, model: &M) -> Result<()> {
    if KEY_WORDS.contains(&name) {
        return Err(Error::InvalidAdapterName { name: name.into(), reason: "is a word of the saved tensor keys" });
    }
    let clashes = model.site_paths().iter().any(|(path, _)| path.split('.').any(|segment| segment == name));
    if clashes {
        return Err(Error::InvalidAdapterName { name: name.into(), reason: "is the name of a module of this model" });
    }
    Ok(())
}

/// Refuses an adapter none of whose tensors name a module of this model: it was trained on
/// another architecture (a BERT adapter on a GPT-2), which would otherwise surface as a puzzling
/// missing tensor. Adapters that match in part get the per-tensor errors instead.
fn check_same_architecture<M: AdapterSites>(tensors: &TensorMap, config: &PeftConfig, model: &M) -> Result<()> {
    let paths: Vec<String> = model.site_paths().into_iter().map(|(p, _)| p).collect();
    let names_a_module = |key: &str| paths.iter().any(|p| key.strip_prefix(p.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')));
    let unmatched: Vec<&String> = tensors.keys().filter(|k| !names_a_module(k)).collect();
    if tensors.is_empty() || unmatched.len() < tensors.len() {
        return Ok(());
    }
    Err(Error::AdapterForAnotherModel {
        model: model.model_type().unwrap_or_else(|| std::any::type_name::<M>().rsplit("::").next().unwrap_or("model").to_string()),
        unmatched: unmatched.len(),
        total: tensors.len(),
        example: unmatched.first().map(|k| k.to_string()).unwrap_or_default(),
        base: config.base_model_name_or_path().map(str::to_string),
    })
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

