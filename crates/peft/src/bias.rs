//! The `bias` modes: which base biases train with an adapter, and their place in its file.
//!
//! `lora_only` trains the biases of the adapted layers, `all` every bias of the model. Either way
//! the biases are base-model parameters: loading such an adapter writes them into the model, as
//! the Python library does.

use burn::tensor::{Tensor, TensorData};
use peft_core::{AdapterSites, Bias, PeftConfig, Result, SiteMut};
use burn::module::ParamId;
use std::collections::{HashMap, HashSet};

use crate::model::AdapterEntry;
use crate::saved::fetch;
use crate::tensors::TensorMap;

/// The file key of a module's bias: `{path}.base_layer.bias` when the adapter wraps the module
/// (it is targeted), `{path}.bias` otherwise, as the Python library names them.
pub(crate) fn bias_key(module_path: &str, wrapped: bool) -> String {
    if wrapped { format!("{module_path}.base_layer.bias") } else { format!("{module_path}.bias") }
}

/// The bias mode of a config.
pub(crate) fn bias_mode(config: &PeftConfig) -> Bias {
    config.bias()
}

/// Base tensors an adapter file carries, to write into the model.
#[derive(Default)]
pub(crate) struct PlannedBiases {
    /// Biases by module path (the Burn path without `base_layer` segments).
    biases: HashMap<String, TensorData>,
    /// Whole embedding tables by site path: the Python library saves the base table with an
    /// embedding adapter (`save_embedding_layers="auto"`) and loads it back into the model.
    tables: Vec<(String, TensorData)>,
}

/// Finds, checks and returns the biases an adapter file carries for its bias mode.
pub(crate) fn plan_biases<M: AdapterSites>(
    model: &M,
    entry: &AdapterEntry,
    tensors: &TensorMap,
    consumed: &mut Vec<String>,
) -> Result<PlannedBiases> {
    let mode = bias_mode(&entry.config);
    let mut planned = PlannedBiases::default();
    let mut error = None;
    model.visit_sites(&mut |path, site| {
        if let SiteMut::Embedding(s) = &site {
            let key = format!("{path}.base_layer.weight");
            if tensors.contains_key(&key) && error.is_none() {
                match fetch(tensors, &key, path, "base_layer.weight", &s.dims()) {
                    Ok(data) => {
                        planned.tables.push((path.to_string(), data));
                        consumed.push(key);
                    }
                    Err(e) => error = Some(e),
                }
            }
        }
        let SiteMut::Linear(s) = site else { return };
        if mode == Bias::None {
            return;
        }
        let wrapped = entry.targeted.iter().any(|t| t == path);
        if !(mode == Bias::All || wrapped) || s.base_layer.bias.is_none() || error.is_some() {
            return;
        }
        let key = bias_key(path, wrapped);
        match fetch(tensors, &key, path, "bias", &[s.dims()[1]]) {
            Ok(data) => {
                planned.biases.insert(path.to_string(), data);
                consumed.push(key);
            }
            Err(e) => error = Some(e),
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    if mode == Bias::All {
        // Biases outside adapter sites (layer norms): every remaining `*.bias` key.
        for (key, data) in tensors {
            if key.ends_with(".bias") && !consumed.contains(key) && !planned.biases.contains_key(key.trim_end_matches(".bias")) {
                planned.biases.insert(key.trim_end_matches(".bias").to_string(), data.clone());
                consumed.push(key.clone());
            }
        }
    }
    Ok(planned)
}

/// Writes planned biases into the base model.
pub(crate) fn apply_biases<M: AdapterSites>(model: &mut M, planned: PlannedBiases) {
    if !planned.tables.is_empty() {
        model.visit_sites_mut(&mut |path, site| {
            if let SiteMut::Embedding(s) = site
                && let Some((_, data)) = planned.tables.iter().find(|(p, _)| p == path)
            {
                let weight = &s.base_layer.weight;
                let value = Tensor::<2>::from_data(data.clone(), &weight.lazy_device()).set_require_grad(false);
                s.base_layer.weight = weight.clone().map(|_| value);
            }
        });
    }
    if planned.biases.is_empty() {
        return;
    }
    // Through the sites rather than Burn's module paths: wrappers such as `AutoModel` add
    // segments (the enum variant) that are not part of transformers' names.
    let planned = planned.biases;
    model.visit_sites_mut(&mut |path, site| {
        let SiteMut::Linear(s) = site else { return };
        let (Some(data), Some(bias)) = (planned.get(path), s.base_layer.bias.as_mut()) else { return };
        let require_grad = bias.val().is_require_grad();
        let value = Tensor::<1>::from_data(data.clone(), &bias.lazy_device()).set_require_grad(require_grad);
        *bias = bias.clone().map(|_| value);
    });
}

/// The biases to save with adapter `entry`: `(key, value)` in PyTorch layout.
///
/// `adapter_ids` are the ids of every adapter parameter, so that only base biases count.
pub(crate) fn export_biases<M: AdapterSites>(model: &M, entry: &AdapterEntry, adapter_ids: &HashSet<ParamId>) -> Vec<(String, TensorData)> {
    let mode = bias_mode(&entry.config);
    let mut out = Vec::new();
    if mode == Bias::None {
        return out;
    }
    model.visit_sites(&mut |path, site| {
        let SiteMut::Linear(s) = site else { return };
        let wrapped = entry.targeted.iter().any(|t| t == path);
        if let (true, Some(b)) = (mode == Bias::All || wrapped, &s.base_layer.bias) {
            out.push((bias_key(path, wrapped), b.val().into_data()));
        }
    });
    if mode == Bias::All {
        for (path, value) in crate::trainable::base_biases(model, adapter_ids) {
            let taken = out.iter().any(|(k, _)| *k == bias_key(&path, true) || *k == bias_key(&path, false));
            if !taken {
                out.push((bias_key(&path, false), value));
            }
        }
    }
    out
}
