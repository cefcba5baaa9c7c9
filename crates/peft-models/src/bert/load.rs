//! Weights from a transformers folder, through `peft_io::weights`.

use burn::tensor::Device;
use peft_core::{AdapterSites, Result};
use peft_io::weights::{LoadOptions, MODEL_FILE, MODEL_INDEX_FILE, load_from_dir, load_into, read_model_tensors};
use std::path::Path;

use super::config::BertConfig;
use super::model::BertModel;

/// Options for a checkpoint of this family: keys may carry the task prefix (`bert.`) or not.
fn options(config: &BertConfig, optional: Vec<String>) -> LoadOptions {
    LoadOptions { prefixes: vec![format!("{}.", config.model_type.prefix())], optional }
}

/// A [`BertModel`] from a folder holding a bare base model or a task model; the pooler is kept
/// only where the file has one (RoBERTa's classifiers are saved without).
pub(crate) fn load_base(dir: &Path, config: &BertConfig, device: &Device) -> Result<BertModel> {
    let tensors = read_model_tensors(dir)?;
    let prefix = config.model_type.prefix();
    let has_pooler = ["pooler.dense.weight".to_string(), format!("{prefix}.pooler.dense.weight")].iter().any(|k| tensors.contains_key(k));
    let model = if has_pooler { BertModel::new(config, device) } else { BertModel::without_pooler(config, device) };
    load_into(model, &tensors, &options(config, Vec::new())).map_err(|e| name_file(e, dir))
}

/// Loads a task model; with `new_head`, the head's weights (its output heads' `weight` and `bias`)
/// are not read, even where the file has them (a fresh head, e.g. for another number of labels),
/// and keep their initialisation.
pub(crate) fn load_head<M: AdapterSites>(model: M, dir: &Path, config: &BertConfig, new_head: bool) -> Result<M> {
    if !new_head {
        return load_from_dir(model, dir, &options(config, Vec::new()));
    }
    let head_keys: Vec<String> = model.output_head_paths().iter().flat_map(|p| [format!("{p}.weight"), format!("{p}.bias")]).collect();
    let mut tensors = read_model_tensors(dir)?;
    tensors.retain(|key, _| !head_keys.contains(key));
    load_into(model, &tensors, &options(config, head_keys)).map_err(|e| name_file(e, dir))
}

/// Names the file read in a missing-tensor error, as `load_from_dir` does (`load_into` only sees
/// a map of tensors, read here first to see whether there is a pooler).
fn name_file(error: peft_core::Error, dir: &Path) -> peft_core::Error {
    match error {
        peft_core::Error::MissingTensor { key, fix, .. } => {
            let file = if dir.join(MODEL_FILE).is_file() { dir.join(MODEL_FILE) } else { dir.join(MODEL_INDEX_FILE) };
            peft_core::Error::MissingTensor { key, file, fix }
        }
        other => other,
    }
}
