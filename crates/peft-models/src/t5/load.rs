//! Weights from a transformers folder, through `peft_io::weights`.

use burn::tensor::Tensor;
use peft_core::{AdaptedEmbedding, AdaptedLinear, AdapterSites, Error, Result};
use peft_io::stored::LazyTensors;
use peft_io::weights::{LoadOptions, MODEL_FILE, MODEL_INDEX_FILE, load_into, read_model_tensors};
use std::path::{Path, PathBuf};

/// The checkpoint key of the shared embedding table.
pub(crate) const SHARED: &str = "shared.weight";
/// The checkpoint key of the language-modelling head.
pub(crate) const LM_HEAD: &str = "lm_head.weight";

/// A folder's tensors, with `shared.weight` filled in from a stack's `embed_tokens` copy when
/// the file names the table only there, and the file read (for error messages).
pub(crate) struct Checkpoint {
    pub(crate) tensors: LazyTensors,
    file: PathBuf,
}

impl Checkpoint {
    /// Reads `dir/model.safetensors` (or its shards).
    pub(crate) fn read(dir: &Path) -> Result<Self> {
        let mut tensors = read_model_tensors(dir)?;
        for prefix in ["", "transformer."] {
            let shared = format!("{prefix}{SHARED}");
            if tensors.contains_key(&shared) {
                continue;
            }
            // transformers keeps one of the tied copies on save; it may be a stack's.
            let alias = ["encoder", "decoder"].iter().find_map(|s| tensors.get(&format!("{prefix}{s}.embed_tokens.weight")).cloned());
            if let Some(table) = alias {
                tensors.insert(shared, table);
            }
        }
        let file = if dir.join(MODEL_FILE).is_file() { dir.join(MODEL_FILE) } else { dir.join(MODEL_INDEX_FILE) };
        Ok(Checkpoint { tensors, file })
    }

    /// Whether `lm_head` shares the embedding table: the file has no `lm_head.weight`, or one
    /// equal to `shared.weight` (transformers then ties them).
    pub(crate) fn lm_head_tied(&self) -> bool {
        match (self.tensors.get(LM_HEAD), self.tensors.get(SHARED)) {
            // Read only to compare; an unreadable tensor fails the load itself later.
            (Some(head), Some(shared)) => head.shape() == shared.shape() && matches!((head.read(), shared.read()), (Ok(h), Ok(s)) if h == s),
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    /// Loads `model` (keys with or without the task models' `transformer.` prefix); keys in
    /// `optional` may be absent.
    pub(crate) fn load<M: AdapterSites>(&self, model: M, optional: Vec<String>) -> Result<M> {
        let options = LoadOptions { prefixes: vec!["transformer.".into()], optional };
        load_into(model, &self.tensors, &options).map_err(|e| match e {
            Error::MissingTensor { key, fix, .. } => Error::MissingTensor { key, file: self.file.clone(), fix },
            other => other,
        })
    }
}

/// Sets `head`'s weight to a copy of `table` (transposed to Burn's `[d_model, vocab]`), keeping
/// its id and `require_grad`: a copy, so that adapters and full fine-tuning of one leave the other.
pub(crate) fn tie(head: AdaptedLinear, table: &AdaptedEmbedding) -> AdaptedLinear {
    let mut head = head;
    let weight = head.base_layer.weight;
    let device = weight.lazy_device();
    let data = table.base_layer.weight.val().detach().transpose().into_data();
    let id = weight.id;
    // In the table's float type (a bf16 load stays bf16).
    let dtype = data.dtype();
    head.base_layer.weight = weight.transform_for_load(Tensor::from_data(data, (&device, dtype)), id);
    head
}
