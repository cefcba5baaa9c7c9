//! Weights from a transformers folder: legacy checkpoint keys renamed to transformers 5's module
//! paths, and the batch norm's running statistics (buffers) filled by hand.

use burn::tensor::Tensor;
use peft_core::adapted::BatchNorm2d;
use peft_core::{AdapterSites, Error, Result};
use peft_io::stored::LazyTensors;
use peft_io::weights::{LoadOptions, load_into, read_model_tensors};
use std::path::Path;

use crate::checkpoint::{name_file, rename_keys};

/// transformers 5's `SegformerModel` / `SegformerForSemanticSegmentation` renames after the
/// stage restructuring (see [`stage_key`]), in its order.
const RENAMES: &[(&str, &str)] = &[
    ("attention.self.query", "attention.q_proj"),
    ("attention.self.key", "attention.k_proj"),
    ("attention.self.value", "attention.v_proj"),
    ("attention.self.sr", "attention.sequence_reduction.sequence_reduction"),
    ("attention.self.layer_norm", "attention.sequence_reduction.layer_norm"),
    ("attention.output.dense", "attention.o_proj"),
    ("mlp.dense1", "mlp.fc1"),
    ("mlp.dense2", "mlp.fc2"),
    ("layer_norm_1", "layernorm_before"),
    ("layer_norm_2", "layernorm_after"),
    ("decode_head.linear_c", "decode_head.linear_projections"),
];

/// `encoder.patch_embeddings.S.` -> `stages.S.patch_embeddings.`, `encoder.block.S.` ->
/// `stages.S.blocks.`, `encoder.layer_norm.S.` -> `stages.S.layer_norm.`.
fn stage_key(key: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    for i in 0..parts.len().saturating_sub(2) {
        let stage = parts[i + 2];
        let renamed = match parts[i + 1] {
            "patch_embeddings" => "patch_embeddings",
            "block" => "blocks",
            "layer_norm" => "layer_norm",
            _ => continue,
        };
        if parts[i] == "encoder" && stage.bytes().all(|b| b.is_ascii_digit()) {
            let mut out: Vec<&str> = parts[..i].to_vec();
            out.extend(["stages", stage, renamed]);
            out.extend(&parts[i + 3..]);
            return out.join(".");
        }
    }
    key.to_string()
}

fn segformer_key(key: &str) -> String {
    RENAMES.iter().fold(stage_key(key), |k, (from, to)| k.replace(from, to))
}

/// `path` (a module path or tensor key) in today's names when it is written in transformers 4's.
pub(crate) fn legacy_path(path: &str) -> Option<String> {
    crate::layers::legacy::renamed(path, segformer_key)
}

/// Today's names for a transformers 4 `target_modules` name (`query`, as the PEFT guides write it).
pub(crate) fn legacy_target_names(name: &str) -> Vec<String> {
    const RENAMED: [(&str, &str); 3] = [("sr", "sequence_reduction"), ("dense1", "fc1"), ("dense2", "fc2")];
    crate::layers::legacy::target_names(name, &RENAMED, legacy_path)
}

/// The folder's tensors with SegFormer keys renamed.
fn read(dir: &Path) -> Result<LazyTensors> {
    Ok(rename_keys(read_model_tensors(dir)?, segformer_key))
}

/// Loads `model`'s parameters from the folder; `optional` keys may be absent.
pub(crate) fn load<M: AdapterSites>(model: M, dir: &Path, optional: &[&str]) -> Result<M> {
    load_from(model, &read(dir)?, dir, optional)
}

fn load_from<M: AdapterSites>(model: M, tensors: &LazyTensors, dir: &Path, optional: &[&str]) -> Result<M> {
    let options = LoadOptions { prefixes: vec!["segformer.".into()], optional: optional.iter().map(|k| k.to_string()).collect() };
    load_into(model, tensors, &options).map_err(|e| name_file(e, dir))
}

/// A semantic-segmentation model: parameters, then the decode head's running statistics.
pub(crate) fn load_semantic(
    model: super::SegformerForSemanticSegmentation,
    dir: &Path,
) -> Result<super::SegformerForSemanticSegmentation> {
    let tensors = read(dir)?;
    let mut model = load_from(model, &tensors, dir, &[])?;
    fill_running_stats(&mut model.decode_head.batch_norm.base_layer, &tensors, "decode_head.batch_norm").map_err(|e| name_file(e, dir))?;
    Ok(model)
}

/// Sets `running_mean` and `running_var` from `{path}.running_mean` / `{path}.running_var`.
pub(crate) fn fill_running_stats(norm: &mut BatchNorm2d, tensors: &LazyTensors, path: &str) -> Result<()> {
    let channels = norm.running_mean.dims()[0];
    let device = norm.running_mean.device();
    let fetch = |name: &str| -> Result<Tensor<1>> {
        let key = format!("{path}.{name}");
        let stored = tensors.get(&key).ok_or_else(|| Error::MissingTensor {
            key: key.clone(),
            file: "the given tensors".into(),
            fix: "the checkpoint lacks the batch norm's running statistics; was it saved without buffers?".into(),
        })?;
        if stored.shape() != [channels] {
            return Err(Error::ShapeMismatch { path: path.into(), tensor: name.into(), expected: vec![channels], actual: stored.shape().to_vec() });
        }
        Ok(Tensor::from_data(stored.read()?.convert::<f32>(), &device))
    };
    norm.running_mean = fetch("running_mean")?;
    norm.running_var = fetch("running_var")?;
    // Only bookkeeping (it does not change the output); absent in some exports.
    if let Some(count) = tensors.get(&format!("{path}.num_batches_tracked")) {
        norm.num_batches_tracked = count.read()?.convert::<i64>().iter::<i64>().next().unwrap_or_default();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::segformer_key;

    #[test]
    fn legacy_keys_map_to_module_paths() {
        let cases = [
            ("segformer.encoder.patch_embeddings.2.proj.weight", "segformer.stages.2.patch_embeddings.proj.weight"),
            ("segformer.encoder.block.0.1.attention.self.query.bias", "segformer.stages.0.blocks.1.attention.q_proj.bias"),
            (
                "segformer.encoder.block.1.0.attention.self.sr.weight",
                "segformer.stages.1.blocks.0.attention.sequence_reduction.sequence_reduction.weight",
            ),
            (
                "encoder.block.1.0.attention.self.layer_norm.bias",
                "stages.1.blocks.0.attention.sequence_reduction.layer_norm.bias",
            ),
            ("segformer.encoder.block.3.0.attention.output.dense.weight", "segformer.stages.3.blocks.0.attention.o_proj.weight"),
            ("segformer.encoder.block.3.0.mlp.dwconv.dwconv.weight", "segformer.stages.3.blocks.0.mlp.dwconv.dwconv.weight"),
            ("segformer.encoder.block.3.0.mlp.dense2.weight", "segformer.stages.3.blocks.0.mlp.fc2.weight"),
            ("segformer.encoder.block.0.0.layer_norm_1.weight", "segformer.stages.0.blocks.0.layernorm_before.weight"),
            ("segformer.encoder.layer_norm.3.bias", "segformer.stages.3.layer_norm.bias"),
            ("decode_head.linear_c.1.proj.weight", "decode_head.linear_projections.1.proj.weight"),
            ("decode_head.batch_norm.running_var", "decode_head.batch_norm.running_var"),
            ("segformer.stages.0.blocks.0.mlp.fc1.weight", "segformer.stages.0.blocks.0.mlp.fc1.weight"),
        ];
        for (legacy, new) in cases {
            assert_eq!(segformer_key(legacy), new, "{legacy}");
        }
    }
}
