//! LoRA on an embedding table.

use burn::module::{Module, Param};
use burn::tensor::module::embedding;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{EmbeddingAdapter, Result};

/// LoRA on an embedding table: `h = E[ids] + s * A[ids] B`.
///
/// `A: [n_embedding, r]` and `B: [r, d_model]` here; the Python library stores the transposes as
/// `lora_embedding_A: [r, n_embedding]` and `lora_embedding_B: [d_model, r]`. Embedding LoRA has no
/// dropout in the Python library's forward either.
#[derive(Module, Debug)]
pub struct LoraEmbedding {
    /// `A`, shape `[n_embedding, r]`.
    pub lora_embedding_a: Param<Tensor<2>>,
    /// `B`, shape `[r, d_model]`.
    pub lora_embedding_b: Param<Tensor<2>>,
    /// The scaling `s`.
    pub scaling: f64,
}

impl LoraEmbedding {
    /// A new adapter from factors in Burn's orientation.
    pub fn new(a: Tensor<2>, b: Tensor<2>, scaling: f64) -> Self {
        LoraEmbedding { lora_embedding_a: Param::from_tensor(a), lora_embedding_b: Param::from_tensor(b), scaling }
    }

    /// A new adapter from the Python library's `lora_embedding_A: [r, n]` and `lora_embedding_B: [d, r]`.
    pub fn from_torch(a: TensorData, b: TensorData, scaling: f64, device: &Device) -> Self {
        Self::new(Tensor::<2>::from_data(a, device).transpose(), Tensor::<2>::from_data(b, device).transpose(), scaling)
    }

    /// `s * A B`, shape `[n_embedding, d_model]`.
    pub fn delta_weight(&self) -> Tensor<2> {
        self.lora_embedding_a.val().matmul(self.lora_embedding_b.val()).mul_scalar(self.scaling)
    }
}

impl EmbeddingAdapter for LoraEmbedding {


    /// `y + s * A[ids] B`.
    ///
    /// # Shapes
    /// - `ids`: `[batch, tokens]`, `y` and output: `[batch, tokens, d_model]`
    fn adapt_output(&self, ids: &Tensor<2, Int>, y: Tensor<3>) -> Tensor<3> {
        let rows = embedding(self.lora_embedding_a.val(), ids.clone());
        let b = self.lora_embedding_b.val();
        let delta = burn::tensor::module::linear(rows, b, None);
        y + delta.mul_scalar(self.scaling)
    }

    fn merge(&self, weight: Tensor<2>) -> Result<Tensor<2>> {
        Ok(weight + self.delta_weight())
    }

    fn unmerge(&self, weight: Tensor<2>) -> Result<Tensor<2>> {
        Ok(weight - self.delta_weight())
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        vec![
            ("lora_embedding_A".into(), self.lora_embedding_a.val().transpose().into_data()),
            ("lora_embedding_B".into(), self.lora_embedding_b.val().transpose().into_data()),
        ]
    }
}
