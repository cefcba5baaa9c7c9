//! `AdapterSet`: the named adapters of one site, as a Burn module.

use burn::module::{Content, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use burn::tensor::Device;
use std::fmt;
use std::sync::{Arc, OnceLock};

use super::erased::{AdapterObject, Erased};
use super::precision::KeptBase;
use crate::{Error, Result};

/// The adapter name meaning "no adapter" in a mixed-adapter batch, as in the Python library.
pub const BASE_ONLY: &str = "__base__";

/// The adapter of each row of a mixed-adapter batch, shared by every site of a model.
///
/// The forward functions return tensors, so a site that sees a batch whose size differs from the
/// number of names cannot fail there: it records the size here and gives the base output, and
/// the caller reports [`Error::BatchAdaptersMismatch`] through [`MixedBatch::check`] (the
/// facade's `with_batch_adapters` does so after the closure).
#[derive(Clone, Debug)]
pub struct MixedBatch {
    names: Arc<[String]>,
    /// The first batch size a site saw that differs from `names.len()`.
    mismatch: Arc<OnceLock<usize>>,
}

impl MixedBatch {
    /// One adapter name per row ([`BASE_ONLY`] for the base model alone).
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        MixedBatch { names: names.iter().map(|n| n.as_ref().to_string()).collect(), mismatch: Arc::default() }
    }

    /// The per-row names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of rows the names are for.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no row is named.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The batch size of a forward that did not fit the names, if one ran.
    pub fn mismatch(&self) -> Option<usize> {
        self.mismatch.get().copied()
    }

    /// [`Error::BatchAdaptersMismatch`] if a forward saw a batch of another size than the names.
    pub fn check(&self) -> Result<()> {
        match self.mismatch() {
            Some(batch) => Err(Error::BatchAdaptersMismatch { names: self.len(), batch }),
            None => Ok(()),
        }
    }

    /// Whether a batch of `batch` rows fits the names; records the size when it does not.
    fn fits(&self, batch: usize) -> bool {
        if batch == self.len() {
            return true;
        }
        // Only the first mismatch is kept: it is the one the error reports.
        let _ = self.mismatch.set(batch);
        false
    }
}

/// One site's view of a [`MixedBatch`]: each row's adapter as an index into the site's set, or
/// `None` for the base alone (`"__base__"`, or an adapter this site does not hold).
#[derive(Clone, Debug)]
pub struct RowAdapters {
    batch: MixedBatch,
    indices: Arc<[Option<usize>]>,
}

impl RowAdapters {
    /// The per-row indices for a batch of `batch` rows, or `None` when the batch does not have
    /// one row per name (then recorded in the shared [`MixedBatch`], for the caller to report).
    pub fn for_batch(&self, batch: usize) -> Option<&[Option<usize>]> {
        self.batch.fits(batch).then_some(&*self.indices)
    }

    /// The batch this view belongs to.
    pub fn batch(&self) -> &MixedBatch {
        &self.batch
    }
}

/// The named adapters of one adapter site, in the order they were added.
///
/// Each adapter's name is a module path segment, so records, optimizers, device moves and
/// autodiff see `...q_proj.adapters.default.lora_a` like any other parameter.
pub struct AdapterSet<T: ?Sized + AdapterObject> {
    entries: Vec<(String, Erased<T>)>,
    /// Names of the adapters the forward uses (all of them, summed).
    active: Vec<String>,
    /// Names of the adapters folded into the base weight, in merge order.
    merged: Vec<String>,
    /// When true, the forward is the base layer's alone.
    disabled: bool,
    /// Per-row adapter choice for a mixed-adapter batch (indices into `entries`).
    rows: Option<RowAdapters>,
    /// A half-precision base's values from before its first merge (see [`super::precision`]).
    kept: KeptBase,
}

impl<T: ?Sized + AdapterObject> Default for AdapterSet<T> {
    fn default() -> Self {
        AdapterSet {
            entries: Vec::new(),
            active: Vec::new(),
            merged: Vec::new(),
            disabled: false,
            rows: None,
            kept: KeptBase::default(),
        }
    }
}

impl<T: ?Sized + AdapterObject> AdapterSet<T> {
    /// Adds an adapter under `name` and makes it the active one.
    pub fn insert(&mut self, name: &str, adapter: Erased<T>) -> Result<()> {
        check_name(name)?;
        if self.get(name).is_some() {
            return Err(Error::InvalidAdapterName { name: name.into(), reason: "is already used at this module" });
        }
        self.entries.push((name.to_string(), adapter));
        if self.active.is_empty() {
            self.active.push(name.to_string());
        }
        Ok(())
    }

    /// Removes the adapter `name`, returning it.
    pub fn remove(&mut self, name: &str) -> Option<Erased<T>> {
        let index = self.entries.iter().position(|(n, _)| n == name)?;
        self.active.retain(|n| n != name);
        if self.merged.iter().any(|n| n == name) {
            // Its update stays in the base weight: the kept values no longer describe a state
            // the remaining adapters can return to (later unmerges subtract instead).
            self.kept.clear();
        }
        self.merged.retain(|n| n != name);
        self.rows = None;
        Some(self.entries.remove(index).1)
    }

    /// The adapter `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, a)| a.get())
    }

    /// The adapter `name`, mutably: [`Erased::downcast_mut`] reaches the concrete adapter to
    /// change its weights in place (AdaLoRA masks ranks this way).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Erased<T>> {
        self.entries.iter_mut().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// Every adapter with its name, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.entries.iter().map(|(n, a)| (n.as_str(), a.get()))
    }

    /// The ids of adapter `name`'s parameters (empty when the set lacks it): what trains when the
    /// adapter does, found by identity rather than by path text.
    pub fn param_ids(&self, name: &str) -> Vec<ParamId> {
        let Some((_, adapter)) = self.entries.iter().find(|(n, _)| n == name) else { return Vec::new() };
        let mut ids = ParamIds::default();
        adapter.visit_with(&mut ids);
        ids.0
    }

    /// The adapter names, in insertion order.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Whether the set holds no adapter.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets the active adapters; names this site lacks are skipped (the site is not targeted by them).
    pub fn set_active(&mut self, names: &[String]) {
        self.active = names.iter().filter(|n| self.get(n).is_some()).cloned().collect();
    }

    /// The active adapter names.
    pub fn active(&self) -> &[String] {
        &self.active
    }

    /// Turns every adapter off (true) or back on (false) without removing any.
    pub fn set_disabled(&mut self, disabled: bool) {
        self.disabled = disabled;
    }

    /// Whether the adapters are turned off.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// Names of merged adapters.
    pub fn merged(&self) -> &[String] {
        &self.merged
    }

    /// Records that `name` was folded into the base weight.
    pub fn mark_merged(&mut self, name: &str) {
        if !self.merged.iter().any(|n| n == name) {
            self.merged.push(name.to_string());
        }
    }

    /// Records that `name` was taken back out of the base weight.
    pub fn mark_unmerged(&mut self, name: &str) {
        self.merged.retain(|n| n != name);
        if self.merged.is_empty() {
            self.kept.clear();
        }
    }

    /// Keeps a half-precision base's values when no adapter is merged yet, so that unmerging the
    /// last one restores them exactly (see [`super::precision`]). Call before
    /// [`mark_merged`](Self::mark_merged).
    pub(crate) fn keep_base<const D: usize>(&mut self, weight: &Tensor<D>, rest: Vec<Tensor<1>>) {
        self.kept.keep(&self.merged, weight, rest);
    }

    /// The values [`keep_base`](Self::keep_base) kept, when `name` is the only merged adapter.
    pub(crate) fn kept_base_if_last(&mut self, name: &str) -> Option<Vec<Tensor<1>>> {
        self.kept.take_if_last(&self.merged, name)
    }

    /// Forgets kept base values (the base weight was replaced).
    pub(crate) fn forget_kept_base(&mut self) {
        self.kept.clear();
    }

    /// Sets the per-row adapters of a mixed batch (`BASE_ONLY` for the base alone), or clears
    /// them with `None`. Names this site lacks act as `BASE_ONLY`.
    ///
    /// Fails with [`Error::MergedAdaptersInMixedBatch`] (naming `path`), changing nothing, while
    /// an adapter is merged here: its update is in the base weight, so it would reach every row.
    pub fn set_rows(&mut self, rows: Option<&MixedBatch>, path: &str) -> Result<()> {
        let Some(batch) = rows else {
            self.rows = None;
            return Ok(());
        };
        if !self.merged.is_empty() {
            return Err(Error::MergedAdaptersInMixedBatch { path: path.to_string(), merged: self.merged.clone() });
        }
        let indices = batch.names().iter().map(|n| self.entries.iter().position(|(e, _)| e == n)).collect();
        self.rows = Some(RowAdapters { batch: batch.clone(), indices });
        Ok(())
    }

    /// Fails while a mixed batch is set: merging then would apply the merged adapter to every
    /// row (see [`AdapterSet::set_rows`]). Site merges call it before changing anything.
    pub fn check_no_rows(&self, name: &str) -> Result<()> {
        match self.rows {
            Some(_) => Err(Error::InvalidState(format!(
                "adapter `{name}` cannot be merged while a mixed-adapter batch is set; clear it first \
                 (set_batch_adapters(None))"
            ))),
            None => Ok(()),
        }
    }

    /// The per-row adapters of a mixed batch, if one is set.
    pub fn rows(&self) -> Option<&RowAdapters> {
        self.rows.as_ref()
    }

    /// The adapter at an index of [`AdapterSet::iter`].
    pub fn at(&self, index: usize) -> Option<(&str, &T)> {
        self.entries.get(index).map(|(n, a)| (n.as_str(), a.get()))
    }

    /// The adapters a plain forward applies: active, not merged, unless disabled.
    pub fn forward_adapters(&self) -> impl Iterator<Item = &T> {
        let live = !self.disabled;
        self.entries
            .iter()
            .filter(move |(n, _)| live && self.active.contains(n) && !self.merged.contains(n))
            .map(|(_, a)| a.get())
    }

    fn map_entries(self, f: impl Fn(Erased<T>) -> Erased<T>) -> Self {
        AdapterSet {
            entries: self.entries.into_iter().map(|(n, a)| (n, f(a))).collect(),
            active: self.active,
            merged: self.merged,
            disabled: self.disabled,
            rows: self.rows,
            kept: self.kept,
        }
    }
}

/// Collects the ids of every float parameter a module visits.
#[derive(Default)]
pub struct ParamIds(pub Vec<ParamId>);

impl ModuleVisitor for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id);
    }
}

/// Adapter names are path segments: they must be non-empty, without dots, and not reserved.
pub fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.contains('.') || name.contains('/') {
        "contains '.' or '/' (names are module path segments and folder names)"
    } else if name == BASE_ONLY {
        "is reserved for \"base model only\" rows of mixed batches"
    } else {
        return Ok(());
    };
    Err(Error::InvalidAdapterName { name: name.into(), reason })
}

impl<T: ?Sized + AdapterObject> Clone for AdapterSet<T> {
    fn clone(&self) -> Self {
        AdapterSet {
            entries: self.entries.clone(),
            active: self.active.clone(),
            merged: self.merged.clone(),
            disabled: self.disabled,
            rows: self.rows.clone(),
            kept: self.kept.clone(),
        }
    }
}

impl<T: ?Sized + AdapterObject> fmt::Debug for AdapterSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterSet")
            .field("adapters", &self.names())
            .field("active", &self.active)
            .field("merged", &self.merged)
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl<T: ?Sized + AdapterObject> Module for AdapterSet<T> {
    fn collect_devices(&self, mut devices: Vec<Device>) -> Vec<Device> {
        for (_, a) in &self.entries {
            devices = (a.ops.collect_devices)(a.get(), devices);
        }
        devices
    }

    fn fork(self, device: &Device) -> Self {
        let mut set = self.map_entries(|a| a.apply(|ops, v| (ops.fork)(v, device)));
        set.kept = std::mem::take(&mut set.kept).to_device(device);
        set
    }

    fn to_device(self, device: &Device) -> Self {
        let mut set = self.map_entries(|a| a.apply(|ops, v| (ops.to_device)(v, device)));
        set.kept = std::mem::take(&mut set.kept).to_device(device);
        set
    }

    fn train(self) -> Self {
        self.map_entries(|a| a.apply(|ops, v| (ops.train)(v)))
    }

    fn valid(&self) -> Self {
        let mut copy = self.clone();
        copy.entries = self.entries.iter().map(|(n, a)| (n.clone(), Erased { value: (a.ops.valid)(a.get()), ops: a.ops })).collect();
        copy
    }

    fn materialize(self) -> Self {
        // Adapters carry no Burn reparameterization; nothing to fold.
        self
    }

    fn num_params(&self) -> usize {
        self.entries.iter().map(|(_, a)| (a.ops.num_params)(a.get())).sum()
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        for (name, adapter) in &self.entries {
            visitor.enter_module(name, "AdapterSet");
            adapter.visit_with(visitor);
            visitor.exit_module(name, "AdapterSet");
        }
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        let AdapterSet { entries, active, merged, disabled, rows, kept } = self;
        let entries = entries
            .into_iter()
            .map(|(name, adapter)| {
                mapper.enter_module(&name, "AdapterSet");
                let adapter = adapter.map_with(mapper);
                mapper.exit_module(&name, "AdapterSet");
                (name, adapter)
            })
            .collect();
        AdapterSet { entries, active, merged, disabled, rows, kept }
    }
}

impl<T: ?Sized + AdapterObject> ModuleDisplayDefault for AdapterSet<T> {
    fn content(&self, content: Content) -> Option<Content> {
        self.entries
            .iter()
            .fold(content, |acc, (name, adapter)| acc.add_debug_attribute(name, adapter))
            .set_top_level_type("AdapterSet")
            .optional()
    }

    fn num_params(&self) -> usize {
        Module::num_params(self)
    }
}

impl<T: ?Sized + AdapterObject> ModuleDisplay for AdapterSet<T> {}
