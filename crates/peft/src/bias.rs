//! The `bias` modes: which base biases train with an adapter, and their place in its file.
//!
//! `lora_only` trains the biases of the adapted layers, `all` every bias of the model (layer
//! norms included). Either way the biases are base-model parameters: loading such an adapter
//! writes them into the model, as the Python library does.
//!
//! File keys are the Python library's: a bias outside adapter sites is its module path plus
//! `.bias` (the Burn module path with enum-variant levels and `base_layer` segments dropped, as
//! `peft_io::weights` names base parameters); a site's bias is `{site}.bias`, or
//! `{site}.base_layer.bias` where the adapter wraps the site. Under `all`, the biases of a module
//! copied for `modules_to_save` appear as the Python wrapper's state dict names them:
//! `{module}.original_module{rest}.bias` for the base layer and `{module}.modules_to_save{rest}.bias`
//! for the copy (the copy's `{site}.bias` is saved with the copy itself).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};
use peft_core::{AdapterSites, Bias, Error, PeftConfig, Result, SiteMut};
use std::collections::HashMap;

use crate::model::AdapterEntry;
use crate::saved::fetch;
use crate::tensors::TensorMap;
use crate::trainable::{enter, exit};

/// The file key of a module's bias: `{path}.base_layer.bias` when the adapter wraps the module
/// (it is targeted), `{path}.bias` otherwise, as the Python library names them.
pub(crate) fn bias_key(module_path: &str, wrapped: bool) -> String {
    if wrapped { format!("{module_path}.base_layer.bias") } else { format!("{module_path}.bias") }
}

/// The bias mode of a config.
pub(crate) fn bias_mode(config: &PeftConfig) -> Bias {
    config.bias()
}

/// Base tensors an adapter file carries, checked, by the id of the parameter they replace.
#[derive(Default)]
pub(crate) struct PlannedBiases {
    /// Biases, and the whole embedding tables the Python library saves with an embedding
    /// adapter (`save_embedding_layers="auto"`) and loads back into the model.
    values: HashMap<ParamId, TensorData>,
}

/// A base-model bias parameter: where it is and what it is called.
struct BaseBias {
    id: ParamId,
    shape: Vec<usize>,
    /// The file key of a bias outside adapter sites (module path + `.bias`).
    key: String,
    /// The adapter site whose base layer holds it, if any.
    site: Option<String>,
    /// Its value, when collected for saving.
    value: Option<TensorData>,
}

/// The file keys of one base bias for one adapter.
struct BiasKeys {
    /// The key the Python library writes the base value under.
    key: String,
    /// Another key accepted when loading (the same site saved wrapped or not).
    alt: Option<String>,
    /// The key of the `modules_to_save` copy's bias that the Python library's `all` filter adds
    /// (`{module}.modules_to_save{rest}.bias`); it repeats the copy's own `{site}.bias`.
    copy: Option<String>,
    /// Whether a file of this bias mode always holds it.
    required: bool,
}

/// The keys of `bias` under adapter `entry`'s bias mode, or `None` when that mode does not train it.
fn keys_for(bias: &BaseBias, entry: &AdapterEntry, mode: Bias) -> Option<BiasKeys> {
    let Some(site) = bias.site.as_deref() else {
        // Outside adapter sites: only `all`; optional, as loading in the Python library is.
        return (mode == Bias::All).then(|| BiasKeys { key: bias.key.clone(), alt: None, copy: None, required: false });
    };
    let wrapped = entry.targeted.iter().any(|t| t == site);
    match mode {
        Bias::None => None,
        Bias::LoraOnly => {
            wrapped.then(|| BiasKeys { key: bias_key(site, true), alt: None, copy: None, required: true })
        }
        Bias::All => {
            if let Some((module, rest)) = copied_module(entry, site) {
                return Some(BiasKeys {
                    key: format!("{module}.original_module{rest}.bias"),
                    alt: None,
                    copy: Some(format!("{module}.modules_to_save{rest}.bias")),
                    // Files saved before these keys existed lack them; the base bias then stays.
                    required: false,
                });
            }
            Some(BiasKeys { key: bias_key(site, wrapped), alt: Some(bias_key(site, !wrapped)), copy: None, required: true })
        }
    }
}

/// The `modules_to_save` module of `entry` that covers `site`, and the rest of the site's path
/// after it (`("classifier", ".dense")` for `classifier.dense`).
fn copied_module<'a>(entry: &'a AdapterEntry, site: &'a str) -> Option<(&'a str, &'a str)> {
    entry.saved.iter().find_map(|m| Some((m.as_str(), path_under(m, site)?)))
}

/// The rest of `site` after module path `module` (`""` or `.dense`), if the site is in it.
pub(crate) fn path_under<'a>(module: &str, site: &'a str) -> Option<&'a str> {
    let rest = site.strip_prefix(module)?;
    (rest.is_empty() || rest.starts_with('.')).then_some(rest)
}

/// Every bias parameter of the model outside adapters, in visiting order.
fn base_biases<M: AdapterSites>(model: &M, with_values: bool) -> Vec<BaseBias> {
    let mut collector = BiasCollector { path: Vec::new(), with_values, found: Vec::new() };
    Module::visit(model, &mut collector);
    let mut site_of: HashMap<ParamId, String> = HashMap::new();
    model.visit_sites(&mut |path, site| {
        let id = site.base_bias_id();
        if let Some(id) = id {
            site_of.insert(id, path.to_string());
        }
    });
    for bias in &mut collector.found {
        bias.site = site_of.get(&bias.id).cloned();
    }
    collector.found
}

/// Collects `*.bias` parameters outside adapter sets, with their file keys.
struct BiasCollector {
    path: Vec<String>,
    with_values: bool,
    found: Vec<BaseBias>,
}

impl ModuleVisitor for BiasCollector {
    fn enter_module(&mut self, name: &str, container: &str) {
        enter(&mut self.path, name, container);
    }
    fn exit_module(&mut self, name: &str, container: &str) {
        exit(&mut self.path, name, container);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.path.last().is_none_or(|s| s != "bias") || self.path.iter().any(|s| s == "adapters") {
            return;
        }
        let key = self.path.iter().map(String::as_str).filter(|s| *s != "base_layer").collect::<Vec<_>>().join(".");
        let value = self.with_values.then(|| param.val().into_data());
        self.found.push(BaseBias { id: param.id, shape: param.lazy_shape().to_vec(), key, site: None, value });
    }
}

/// Finds, checks and returns the base tensors an adapter file carries for its bias mode (and
/// the embedding tables it carries), adding the keys used to `consumed`.
///
/// Nothing is written here: [`apply_biases`] does that once every other check passed, so a
/// failed load leaves the model unchanged.
///
/// # Errors
/// [`Error::ShapeMismatch`] for a tensor whose shape differs from the model's parameter, and
/// [`Error::MissingTensor`] for a bias of an adapted layer the mode requires. Keys that no bias of
/// the model takes are left unconsumed, for the caller's check to report.
pub(crate) fn plan_biases<M: AdapterSites>(
    model: &M,
    entry: &AdapterEntry,
    tensors: &TensorMap,
    consumed: &mut Vec<String>,
) -> Result<PlannedBiases> {
    let mut planned = PlannedBiases::default();
    let mut error = None;
    model.visit_sites(&mut |path, site| {
        if let SiteMut::Embedding(s) = &site {
            let key = format!("{path}.base_layer.weight");
            if tensors.contains_key(&key) && error.is_none() {
                match fetch(tensors, &key, path, "base_layer.weight", &s.dims()) {
                    Ok(data) => {
                        planned.values.insert(s.base_layer.weight.id, data);
                        consumed.push(key);
                    }
                    Err(e) => error = Some(e),
                }
            }
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    let mode = bias_mode(&entry.config);
    if mode == Bias::None {
        return Ok(planned);
    }
    for bias in base_biases(model, false) {
        let Some(keys) = keys_for(&bias, entry, mode) else { continue };
        let module = bias.site.clone().unwrap_or_else(|| bias.key.trim_end_matches(".bias").to_string());
        let found = [Some(&keys.key), keys.alt.as_ref()].into_iter().flatten().find(|k| tensors.contains_key(*k));
        match found {
            Some(key) => {
                planned.values.insert(bias.id, fetch(tensors, key, &module, key, &bias.shape)?);
                consumed.push(key.clone());
            }
            None if keys.required => {
                return Err(Error::MissingTensor {
                    key: keys.key,
                    file: peft_io::adapter::WEIGHTS_FILE.into(),
                    fix: format!(
                        "adapter_config.json says bias = \"{}\", which saves the bias of `{module}`: was the file \
                         saved from another model, or its config edited?",
                        mode.as_str()
                    ),
                });
            }
            None => {}
        }
        if let Some(copy) = keys.copy.filter(|k| tensors.contains_key(k)) {
            // The copy's value comes from its own key; this repeat is only checked.
            fetch(tensors, &copy, &module, &copy, &bias.shape)?;
            consumed.push(copy);
        }
    }
    Ok(planned)
}

/// Writes planned tensors into the base model, by parameter id, keeping each parameter's id,
/// device and `require_grad`.
pub(crate) fn apply_biases<M: AdapterSites>(model: &mut M, planned: PlannedBiases) {
    if planned.values.is_empty() {
        return;
    }
    // Burn modules are cheap to clone (tensors are shared); `map` needs the model by value.
    *model = model.clone().map(&mut WriteById { values: planned.values });
}

/// Replaces the parameters whose ids have a value.
struct WriteById {
    values: HashMap<ParamId, TensorData>,
}

impl ModuleMapper for WriteById {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.values.remove(&param.id) {
            Some(data) => {
                // In the parameter's own float type: a half-precision base stays half precision.
                let dtype = param.val().dtype();
                let tensor = Tensor::<D>::from_data(data.convert::<f32>(), (&param.lazy_device(), dtype));
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
            None => param,
        }
    }
}

/// The base tensors to save with adapter `name` (config `entry`): `(key, value)` in PyTorch
/// layout, under the keys the Python library writes for its bias mode.
pub(crate) fn export_biases<M: AdapterSites>(model: &M, name: &str, entry: &AdapterEntry) -> Vec<(String, TensorData)> {
    let mode = bias_mode(&entry.config);
    let mut out = Vec::new();
    if mode == Bias::None {
        return out;
    }
    // The copies' own biases, for the repeated `modules_to_save` keys of `all`.
    let mut copy_biases: HashMap<String, TensorData> = HashMap::new();
    if mode == Bias::All && !entry.saved.is_empty() {
        model.visit_sites(&mut |path, site| {
            if copied_module(entry, path).is_some()
                && let Some(bias) = site.export(name).and_then(|t| t.into_iter().find(|(k, _)| k == "bias"))
            {
                copy_biases.insert(path.to_string(), bias.1);
            }
        });
    }
    for bias in base_biases(model, true) {
        let Some(keys) = keys_for(&bias, entry, mode) else { continue };
        if let (Some(copy), Some(value)) = (keys.copy, bias.site.as_ref().and_then(|s| copy_biases.remove(s))) {
            out.push((copy, value));
        }
        if let Some(value) = bias.value {
            out.push((keys.key, value));
        }
    }
    out
}
