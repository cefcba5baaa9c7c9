//! `modules_to_save`: a trainable full copy of a layer, one per adapter.
//!
//! The Python library wraps such a module and routes the forward to the active adapter's copy;
//! here the copy is an adapter of the site whose output replaces the base output.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, Linear};
use burn::tensor::{Int, Tensor, TensorData};

use super::conv::Conv2dAdapter;
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

/// A trainable copy of a 2-D convolution (`modules_to_save`, such as a segmentation head's 1x1
/// classifier), used instead of the base layer.
#[derive(Module, Debug)]
pub struct SavedConv2d {
    /// The copy, starting equal to the base layer (same stride, padding, groups).
    pub copy: Conv2d,
}

impl Conv2dAdapter for SavedConv2d {

    /// The copy's output; the base output is discarded.
    fn adapt_output(&self, x: &Tensor<4>, _y: Tensor<4>) -> Tensor<4> {
        self.copy.forward(x.clone())
    }

    fn merge(&self, _weight: Tensor<4>) -> Result<Tensor<4>> {
        Ok(self.copy.weight.val())
    }

    fn merge_bias(&self, bias: Tensor<1>) -> Result<Tensor<1>> {
        Ok(self.copy.bias.as_ref().map_or(bias, |b| b.val()))
    }

    fn unmerge(&self, _weight: Tensor<4>) -> Result<Tensor<4>> {
        Err(unmerge_error())
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        // Burn's kernel layout is PyTorch's `[c_out, c_in / groups, kh, kw]`.
        let mut out = vec![("weight".to_string(), self.copy.weight.val().into_data())];
        if let Some(b) = &self.copy.bias {
            out.push(("bias".to_string(), b.val().into_data()));
        }
        out
    }
}

pub(crate) fn unmerge_error() -> Error {
    Error::InvalidState(
        "a merged modules_to_save copy replaced the original module and cannot be unmerged; reload the base model".into(),
    )
}
