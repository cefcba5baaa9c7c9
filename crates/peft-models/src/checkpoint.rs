//! Reading transformers checkpoints: what the families whose keys need renaming (ViT, SegFormer)
//! share.

use peft_core::Error;
use peft_io::stored::LazyTensors;
use peft_io::weights::{MODEL_FILE, MODEL_INDEX_FILE};
use std::path::Path;

/// Applies substring renames in order to every key (keys already in the new form are unchanged).
pub(crate) fn rename_keys(tensors: LazyTensors, rename: impl Fn(&str) -> String) -> LazyTensors {
    tensors.into_iter().map(|(k, v)| (rename(&k), v)).collect()
}

/// Names the file read in a missing-tensor error (`load_into` only sees a map of tensors).
pub(crate) fn name_file(error: Error, dir: &Path) -> Error {
    match error {
        Error::MissingTensor { key, fix, .. } => {
            let file = if dir.join(MODEL_FILE).is_file() { dir.join(MODEL_FILE) } else { dir.join(MODEL_INDEX_FILE) };
            Error::MissingTensor { key, file, fix }
        }
        other => other,
    }
}
