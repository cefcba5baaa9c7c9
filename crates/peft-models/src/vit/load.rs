//! Weights from a transformers folder: legacy checkpoint keys renamed to transformers 5's module paths.

use burn::tensor::Device;
use peft_core::{AdapterSites, Result};
use peft_io::stored::LazyTensors;
use peft_io::weights::{LoadOptions, load_into, read_model_tensors};
use std::path::Path;

use super::config::ViTConfig;
use super::model::ViTModel;
use crate::checkpoint::{name_file, rename_keys};

/// transformers 5's `ViTModel` conversion, in its order: checkpoints on the Hub (and those
/// transformers 5 writes) keep the legacy keys, while modules (and adapter keys) use the new names.
const RENAMES: &[(&str, &str)] = &[
    ("encoder.layer.", "layers."),
    ("attention.attention.query", "attention.q_proj"),
    ("attention.attention.key", "attention.k_proj"),
    ("attention.attention.value", "attention.v_proj"),
    ("attention.output.dense", "attention.o_proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
];

fn vit_key(key: &str) -> String {
    RENAMES.iter().fold(key.to_string(), |k, (from, to)| k.replace(from, to))
}

/// `path` (a module path or tensor key) in today's names when it is written in transformers 4's.
pub(crate) fn legacy_path(path: &str) -> Option<String> {
    crate::layers::legacy::renamed(path, vit_key)
}

/// Today's names for a transformers 4 `target_modules` name (`query`, as the PEFT guides write it).
pub(crate) fn legacy_target_names(name: &str) -> Vec<String> {
    crate::layers::legacy::target_names(name, &[], legacy_path)
}

/// The folder's tensors with ViT keys renamed.
fn read(dir: &Path) -> Result<LazyTensors> {
    Ok(rename_keys(read_model_tensors(dir)?, vit_key))
}

fn options(optional: Vec<String>) -> LoadOptions {
    LoadOptions { prefixes: vec!["vit.".into()], optional }
}

/// A [`ViTModel`] from a folder holding a bare model or a classifier; the pooler is kept only
/// where the file has one.
pub(crate) fn load_base(dir: &Path, config: &ViTConfig, device: &Device) -> Result<ViTModel> {
    let tensors = read(dir)?;
    let has_pooler = ["pooler.dense.weight", "vit.pooler.dense.weight"].iter().any(|k| tensors.contains_key(*k));
    let model = if has_pooler { ViTModel::new(config, device) } else { ViTModel::without_pooler(config, device) };
    load_into(model, &tensors, &options(Vec::new())).map_err(|e| name_file(e, dir))
}

/// Loads a task model; with `new_head`, its output heads' `weight` and `bias` may be absent.
pub(crate) fn load_head<M: AdapterSites>(model: M, dir: &Path, new_head: bool) -> Result<M> {
    let optional = if new_head {
        model.output_head_paths().iter().flat_map(|p| [format!("{p}.weight"), format!("{p}.bias")]).collect()
    } else {
        Vec::new()
    };
    load_into(model, &read(dir)?, &options(optional)).map_err(|e| name_file(e, dir))
}

#[cfg(test)]
mod tests {
    use super::vit_key;

    #[test]
    fn legacy_keys_map_to_module_paths() {
        let cases = [
            ("vit.encoder.layer.3.attention.attention.query.weight", "vit.layers.3.attention.q_proj.weight"),
            ("encoder.layer.0.attention.output.dense.bias", "layers.0.attention.o_proj.bias"),
            ("vit.encoder.layer.1.intermediate.dense.weight", "vit.layers.1.mlp.fc1.weight"),
            ("vit.encoder.layer.1.output.dense.weight", "vit.layers.1.mlp.fc2.weight"),
            ("vit.layers.1.mlp.fc2.weight", "vit.layers.1.mlp.fc2.weight"),
            ("vit.embeddings.cls_token", "vit.embeddings.cls_token"),
        ];
        for (legacy, new) in cases {
            assert_eq!(vit_key(legacy), new);
        }
    }
}
