//! P-tuning: virtual tokens passed through an MLP before being prepended.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use peft_core::{ModelAdapter, ModelInputs, PrepareContext, Result};

use crate::PROMPT_EMBEDDINGS;
use crate::prompt_tuning::prepend_prompts;

/// P-tuning's MLP head: `Linear(dim, hidden) -> ReLU -> Linear(hidden, hidden) -> ReLU -> Linear(hidden, dim)`.
#[derive(Module, Debug)]
pub struct PromptMlp {
    /// `token_dim -> encoder_hidden_size`.
    pub first: Linear,
    /// `encoder_hidden_size -> encoder_hidden_size`.
    pub second: Linear,
    /// `encoder_hidden_size -> token_dim`.
    pub third: Linear,
}

/// P-tuning's encoder (the Python library's `PromptEncoder` with the MLP reparameterization):
/// learned virtual-token embeddings through [`PromptMlp`], prepended like prompt tuning's.
///
/// A saved adapter holds only the encoder's output (`prompt_embeddings`), so a loaded one is a
/// plain table without the MLP, as in the Python library's inference mode.
///
/// # Shapes
/// - `embedding`: `[num_virtual_tokens, token_dim]`
#[derive(Module, Debug)]
pub struct PromptEncoder {
    /// The virtual tokens' inputs to the MLP (or, without it, the prompts themselves).
    pub embedding: Param<Tensor<2>>,
    /// The MLP, while training.
    pub mlp_head: Option<PromptMlp>,
}

impl PromptEncoder {
    /// A fresh encoder: the table from N(0, 1), the MLP with Burn's default init.
    pub fn mlp(num_virtual_tokens: usize, token_dim: usize, hidden: usize, device: &Device) -> Self {
        let table = Tensor::random([num_virtual_tokens, token_dim], Distribution::Normal(0.0, 1.0), device);
        let mlp_head = PromptMlp {
            first: LinearConfig::new(token_dim, hidden).init(device),
            second: LinearConfig::new(hidden, hidden).init(device),
            third: LinearConfig::new(hidden, token_dim).init(device),
        };
        PromptEncoder { embedding: Param::from_tensor(table), mlp_head: Some(mlp_head) }
    }

    /// A frozen table of prompts (a saved `prompt_embeddings`).
    ///
    /// # Shapes
    /// - `table`: `[num_virtual_tokens, token_dim]`
    pub fn from_table(table: Tensor<2>) -> Self {
        PromptEncoder { embedding: Param::from_tensor(table), mlp_head: None }
    }

    /// The prompts: the MLP's output on the virtual tokens.
    ///
    /// # Shapes
    /// - output: `[num_virtual_tokens, token_dim]`
    pub fn prompts(&self) -> Tensor<2> {
        let x = self.embedding.val();
        match &self.mlp_head {
            None => x,
            Some(m) => m.third.forward(relu(m.second.forward(relu(m.first.forward(x))))),
        }
    }
}

impl ModelAdapter for PromptEncoder {
    fn prepare(&self, inputs: ModelInputs, context: &PrepareContext<'_>) -> Result<ModelInputs> {
        prepend_prompts(self.prompts(), inputs, context)
    }

    fn virtual_positions(&self) -> usize {
        self.embedding.dims()[0]
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        vec![(PROMPT_EMBEDDINGS.into(), self.prompts().into_data())]
    }
}
