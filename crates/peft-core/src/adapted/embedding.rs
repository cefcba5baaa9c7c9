//! `AdaptedEmbedding`: an embedding table that adapters attach to.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::fmt::Debug;

use super::linear_merge::{replace, unknown};
use super::mixed::select_rows;
use super::precision::{to_adapter_dtype, unflatten};
use super::set::AdapterSet;
use crate::{Error, Result};

/// An adapter on an embedding table.
pub trait EmbeddingAdapter: super::erased::AdapterObject {

    /// Transforms the looked-up embeddings given the token ids (LoRA adds `s * A[ids] B`).
    ///
    /// # Shapes
    /// - `ids`: `[batch, tokens]`
    /// - `y`: `[batch, tokens, d_model]`, and the same out.
    fn adapt_output(&self, ids: &Tensor<2, Int>, y: Tensor<3>) -> Tensor<3>;

    /// [`adapt_output`](Self::adapt_output) for adapters that also read the base table (DoRA).
    /// The layer calls this one; by default it forwards to `adapt_output`.
    fn adapt_output_with_base(&self, base: &Embedding, ids: &Tensor<2, Int>, y: Tensor<3>) -> Tensor<3> {
        let _ = base;
        self.adapt_output(ids, y)
    }

    /// Folds the adapter into the table `[n_embedding, d_model]`.
    fn merge(&self, weight: Tensor<2>) -> Result<Tensor<2>>;

    /// Takes a merged adapter back out of the table.
    fn unmerge(&self, weight: Tensor<2>) -> Result<Tensor<2>>;

    /// The adapter's tensors in the Python library's layout, keyed by suffix.
    fn export(&self) -> Vec<(String, TensorData)>;
}

super::erased::adapter_object!(EmbeddingAdapter);

/// An embedding table with named adapters.
#[derive(Module, Debug)]
pub struct AdaptedEmbedding {
    /// The frozen table.
    pub base_layer: Embedding,
    /// The adapters, by name.
    pub adapters: AdapterSet<dyn EmbeddingAdapter>,
}

impl AdaptedEmbedding {
    /// A new table with Burn's default initialisation.
    pub fn new(n_embedding: usize, d_model: usize, device: &Device) -> Self {
        Self::from_embedding(EmbeddingConfig::new(n_embedding, d_model).init(device))
    }

    /// Wraps an existing Burn embedding.
    pub fn from_embedding(base_layer: Embedding) -> Self {
        AdaptedEmbedding { base_layer, adapters: AdapterSet::default() }
    }

    /// `[n_embedding, d_model]`.
    pub fn dims(&self) -> [usize; 2] {
        self.base_layer.weight.lazy_shape().dims()
    }

    /// Looks up `ids` and applies the active adapters, in the table's float type (adapters
    /// compute in f32, see [`super::precision`]).
    ///
    /// # Shapes
    /// - `ids`: `[batch, tokens]`
    /// - output: `[batch, tokens, d_model]`
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let y = self.base_layer.forward(ids.clone());
        if self.adapters.is_empty() || self.adapters.is_disabled() {
            return y;
        }
        let dtype = y.dtype();
        let y = to_adapter_dtype(y);
        if let Some(rows) = self.adapters.rows() {
            // A batch of another size is recorded for the caller to report; the base output stands.
            let Some(rows) = rows.for_batch(y.dims()[0]) else { return y.cast(dtype) };
            let adapters: Vec<&dyn EmbeddingAdapter> = self.adapters.iter().map(|(_, a)| a).collect();
            return select_rows(y, rows, |i, y| adapters[i].adapt_output_with_base(&self.base_layer, &ids, y)).cast(dtype);
        }
        self.adapters.forward_adapters().fold(y, |y, a| a.adapt_output_with_base(&self.base_layer, &ids, y)).cast(dtype)
    }

    /// Folds adapter `name` into the table: added in f32, rounded once to the table's type; a
    /// half-precision table keeps its values from before the first merge.
    pub fn merge_adapter(&mut self, name: &str) -> Result<()> {
        self.adapters.check_no_rows(name)?;
        if self.adapters.merged().iter().any(|n| n == name) {
            return Ok(());
        }
        let adapter = self.adapters.get(name).ok_or_else(|| unknown(name, self.adapters.names()))?;
        let table = self.base_layer.weight.val();
        let merged = adapter.merge(to_adapter_dtype(table.clone()))?;
        self.base_layer.weight = replace(&self.base_layer.weight, merged.cast(table.dtype()));
        self.adapters.keep_base(&table, Vec::new());
        self.adapters.mark_merged(name);
        Ok(())
    }

    /// Takes merged adapter `name` back out of the table (the kept original when it is the last
    /// merged adapter of a half-precision table).
    pub fn unmerge_adapter(&mut self, name: &str) -> Result<()> {
        if !self.adapters.merged().iter().any(|n| n == name) {
            return Err(Error::InvalidState(format!("adapter `{name}` is not merged, so it cannot be unmerged")));
        }
        let table = self.base_layer.weight.val();
        let restored = match self.adapters.kept_base_if_last(name).and_then(|mut kept| kept.pop()) {
            Some(kept) => unflatten(kept, &table),
            None => {
                let adapter = self.adapters.get(name).ok_or_else(|| unknown(name, self.adapters.names()))?;
                adapter.unmerge(to_adapter_dtype(table.clone()))?.cast(table.dtype())
            }
        };
        self.base_layer.weight = replace(&self.base_layer.weight, restored);
        self.adapters.mark_unmerged(name);
        Ok(())
    }
}
