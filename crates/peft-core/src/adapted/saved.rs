//! `modules_to_save`: a trainable full copy of a layer, one per adapter.
//!
//! The Python library wraps such a module and routes the forward to the active adapter's copy;
//! here the copy is an adapter of the site whose output replaces the base output.

use burn::module::Module;
use burn::nn::{Embedding, Linear};
use burn::tensor::{Int, Tensor, TensorData};

use super::embedding::EmbeddingAdapter;
use super::linear::LinearAdapter;
use crate::{Error, Result};

/// A trainable copy of a linear layer (`modules_to_save`), used instead of the base layer.
#[derive(Module, Debug)]
pub struct SavedLinear {
    /// The copy, starting equal to the base layer.
    pub copy: Linear,
}

impl LinearAdapter for SavedLinear {
    crate::erased_module!(LinearAdapter);

    /// The copy's output `x W' + b'`; the base output is discarded.
    fn adapt_output(&self, x: &Tensor<3>, _y: Tensor<3>) -> Tensor<3> {
        self.copy.forward(x.clone())
    }

    /// Merging replaces the base layer with the copy, as `merge_and_unload` does in Python.
    fn merge(&self, _weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        let new_bias = match (bias, &self.copy.bias) {
            (Some(_), Some(b)) => Some(b.val()),
            (b, _) => b,
        };
        Ok((self.copy.weight.val(), new_bias))
    }

    fn unmerge(&self, _weight: Tensor<2>, _bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        Err(unmerge_error())
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        // PyTorch's `nn.Linear` layout `[d_output, d_input]`.
        let mut out = vec![("weight".to_string(), self.copy.weight.val().transpose().into_data())];
        if let Some(b) = &self.copy.bias {
            out.push(("bias".to_string(), b.val().into_data()));
        }
        out
    }
}

/// A trainable copy of an embedding table (`modules_to_save`).
#[derive(Module, Debug)]
pub struct SavedEmbedding {
    /// The copy, starting equal to the base table.
    pub copy: Embedding,
}

impl EmbeddingAdapter for SavedEmbedding {
    crate::erased_module!(EmbeddingAdapter);

    fn adapt_output(&self, ids: &Tensor<2, Int>, _y: Tensor<3>) -> Tensor<3> {
        self.copy.forward(ids.clone())
    }

    fn merge(&self, _weight: Tensor<2>) -> Result<Tensor<2>> {
        Ok(self.copy.weight.val())
    }

    fn unmerge(&self, _weight: Tensor<2>) -> Result<Tensor<2>> {
        Err(unmerge_error())
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        vec![("weight".to_string(), self.copy.weight.val().into_data())]
    }
}

fn unmerge_error() -> Error {
    Error::InvalidState(
        "a merged modules_to_save copy replaced the original module and cannot be unmerged; reload the base model".into(),
    )
}
