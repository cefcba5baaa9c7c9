//! DoRA on an embedding table.

use burn::module::{Module, Param};
use burn::nn::Embedding;
use burn::tensor::module::{embedding, linear};
use burn::tensor::{Int, Tensor, TensorData};
use peft_core::adapted::precision::to_adapter_dtype;
use peft_core::{EmbeddingAdapter, Result};

use super::linear::not_merged;
use super::{MAGNITUDE_KEY, MergedNorm, column_norms};
use crate::LoraEmbedding;

/// DoRA on an embedding table: `h = f (E[ids] + s A[ids] B)`, with `f = m / ||E + s A B||` per
/// embedding dimension (the norm runs over the vocabulary, as the Python library takes it).
///
/// The running output `y` is scaled as a whole, as in the Python library.
#[derive(Module, Debug)]
pub struct DoraEmbedding {
    /// The low-rank direction update.
    pub lora: LoraEmbedding,
    /// The magnitude `m`, shape `[d_model]`.
    pub magnitude: Param<Tensor<1>>,
    #[module(skip)]
    merged_norm: MergedNorm,
}

impl DoraEmbedding {
    /// DoRA from a LoRA update and a magnitude `[d_model]`.
    pub fn new(lora: LoraEmbedding, magnitude: Tensor<1>) -> Self {
        DoraEmbedding { lora, magnitude: Param::from_tensor(magnitude), merged_norm: MergedNorm::default() }
    }

    /// DoRA starting at `m = ||E + s A B||` (so `f = 1`).
    ///
    /// # Shapes
    /// - `table`: the base table `[n_embedding, d_model]`
    pub fn initialised(lora: LoraEmbedding, table: Tensor<2>) -> Self {
        let norms = column_norms(table, lora.lora_embedding_a.val(), lora.lora_embedding_b.val(), lora.scaling);
        // A leaf of its own: the norms are a computed tensor, the magnitude a parameter.
        Self::new(lora, norms.detach())
    }

    fn norms(&self, table: Tensor<2>) -> Tensor<1> {
        column_norms(table, self.lora.lora_embedding_a.val(), self.lora.lora_embedding_b.val(), self.lora.scaling)
    }
}

impl EmbeddingAdapter for DoraEmbedding {
    /// Never called: [`AdaptedEmbedding`](peft_core::AdaptedEmbedding) calls
    /// [`adapt_output_with_base`](Self::adapt_output_with_base), since DoRA needs the table.
    fn adapt_output(&self, _ids: &Tensor<2, Int>, _y: Tensor<3>) -> Tensor<3> {
        panic!("DoRA needs the base table: call EmbeddingAdapter::adapt_output_with_base")
    }

    /// # Shapes
    /// - `ids`: `[batch, tokens]`, `y` and output: `[batch, tokens, d_model]`
    fn adapt_output_with_base(&self, base: &Embedding, ids: &Tensor<2, Int>, y: Tensor<3>) -> Tensor<3> {
        let table = to_adapter_dtype(base.weight.val());
        let d_model = table.dims()[1];
        let factor = (self.magnitude.val() / self.norms(table)).reshape([1, 1, d_model]);
        let rows = embedding(self.lora.lora_embedding_a.val(), ids.clone());
        let update = linear(rows, self.lora.lora_embedding_b.val(), None).mul_scalar(self.lora.scaling);
        factor.clone() * y + factor * update
    }

    fn merge(&self, table: Tensor<2>) -> Result<Tensor<2>> {
        let d_model = table.dims()[1];
        let norms = self.norms(table.clone());
        let factor = self.magnitude.val().detach() / norms.clone();
        self.merged_norm.store(norms);
        Ok((table + self.lora.delta_weight()) * factor.reshape([1, d_model]))
    }

    fn unmerge(&self, table: Tensor<2>) -> Result<Tensor<2>> {
        let d_model = table.dims()[1];
        let factor = self.magnitude.val().detach() / self.merged_norm.take().ok_or_else(not_merged)?;
        Ok(table / factor.reshape([1, d_model]) - self.lora.delta_weight())
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        let mut out = self.lora.export();
        out.push((MAGNITUDE_KEY.into(), self.magnitude.val().into_data()));
        out
    }
}
