//! P-tuning: virtual tokens passed through an MLP (or a bidirectional LSTM and an MLP) before
//! being prepended.

use burn::module::{Module, Param};
use burn::nn::{BiLstm, BiLstmConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
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

/// P-tuning's LSTM head (`encoder_reparameterization_type: "LSTM"`): a bidirectional LSTM of
/// `encoder_num_layers` layers over the virtual tokens in order (dropout `encoder_dropout` between
/// layers), then `Linear(2h, 2h) -> ReLU -> Linear(2h, token_dim)`, `h = encoder_hidden_size`.
#[derive(Module, Debug)]
pub struct PromptLstm {
    /// The layers: `token_dim -> 2h`, then `2h -> 2h`.
    pub layers: Vec<BiLstm>,
    /// Between LSTM layers, as `nn.LSTM(dropout=...)`.
    pub dropout: Dropout,
    /// `2h -> 2h`.
    pub first: Linear,
    /// `2h -> token_dim`.
    pub second: Linear,
}

impl PromptLstm {
    /// A fresh head: the LSTM weights from `U(-1/sqrt(h), 1/sqrt(h))` as PyTorch draws them, the
    /// linear layers with Burn's default init.
    pub fn new(token_dim: usize, hidden: usize, num_layers: usize, dropout: f64, device: &Device) -> Self {
        let bound = 1.0 / (hidden.max(1) as f64).sqrt();
        let layers = (0..num_layers.max(1))
            .map(|i| {
                let input = if i == 0 { token_dim } else { 2 * hidden };
                BiLstmConfig::new(input, hidden, true).with_initializer(Initializer::Uniform { min: -bound, max: bound }).init(device)
            })
            .collect();
        PromptLstm {
            layers,
            dropout: DropoutConfig::new(dropout).init(),
            first: LinearConfig::new(2 * hidden, 2 * hidden).init(device),
            second: LinearConfig::new(2 * hidden, token_dim).init(device),
        }
    }

    /// The head on the virtual tokens' inputs, read as one sequence.
    ///
    /// # Shapes
    /// - `x`: `[num_virtual_tokens, token_dim]`, and the same out.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        let mut h = x.unsqueeze_dim::<3>(0);
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h, None).0;
            if i < last {
                h = self.dropout.forward(h);
            }
        }
        let h = h.squeeze_dim::<2>(0);
        self.second.forward(relu(self.first.forward(h)))
    }
}

/// P-tuning's encoder (the Python library's `PromptEncoder`): learned virtual-token embeddings
/// through [`PromptMlp`] (or [`PromptLstm`]), prepended like prompt tuning's.
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
    /// The MLP, while training with the MLP reparameterization.
    pub mlp_head: Option<PromptMlp>,
    /// The LSTM head, while training with the LSTM reparameterization.
    pub lstm_head: Option<PromptLstm>,
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
        PromptEncoder { embedding: Param::from_tensor(table), mlp_head: Some(mlp_head), lstm_head: None }
    }

    /// A fresh encoder with the LSTM reparameterization: the table from N(0, 1), then
    /// [`PromptLstm`].
    pub fn lstm(num_virtual_tokens: usize, token_dim: usize, hidden: usize, num_layers: usize, dropout: f64, device: &Device) -> Self {
        let table = Tensor::random([num_virtual_tokens, token_dim], Distribution::Normal(0.0, 1.0), device);
        let head = PromptLstm::new(token_dim, hidden, num_layers, dropout, device);
        PromptEncoder { embedding: Param::from_tensor(table), mlp_head: None, lstm_head: Some(head) }
    }

    /// A frozen table of prompts (a saved `prompt_embeddings`).
    ///
    /// # Shapes
    /// - `table`: `[num_virtual_tokens, token_dim]`
    pub fn from_table(table: Tensor<2>) -> Self {
        PromptEncoder { embedding: Param::from_tensor(table), mlp_head: None, lstm_head: None }
    }

    /// The prompts: the head's output on the virtual tokens (the table itself once saved).
    ///
    /// # Shapes
    /// - output: `[num_virtual_tokens, token_dim]`
    pub fn prompts(&self) -> Tensor<2> {
        let x = self.embedding.val();
        match (&self.mlp_head, &self.lstm_head) {
            (Some(m), _) => m.third.forward(relu(m.second.forward(relu(m.first.forward(x))))),
            (None, Some(lstm)) => lstm.forward(x),
            (None, None) => x,
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
