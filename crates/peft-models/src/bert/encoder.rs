//! The encoder stack: `encoder.layer.{i}` = attention, intermediate, output.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use peft_core::cache::{KvCache, LayerKv};
use peft_core::AdaptedLinear;

use super::attention::{BertAttention, BertSelfOutput};
use super::config::BertConfig;
use crate::layers::HiddenAct;

/// The feed-forward block after attention: `dense` then the activation.
#[derive(Module, Debug)]
pub struct BertIntermediate {
    /// `hidden_size -> intermediate_size`.
    pub dense: AdaptedLinear,
    /// The activation (exact GELU for BERT and RoBERTa).
    #[module(skip)]
    pub act: HiddenAct,
}

impl BertIntermediate {
    /// A new block for `config`.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        BertIntermediate { dense: super::linear(config.hidden_size, config.intermediate_size, config, device), act: config.hidden_act }
    }

    /// `act(dense(x))`; GELU is exact: `x * 0.5 * (1 + erf(x / sqrt(2)))`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - output: `[batch, seq, intermediate]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.act.forward(self.dense.forward(x))
    }
}

/// The block after the feed-forward layer (`output`): same form as [`BertSelfOutput`], from
/// `intermediate_size` back to `hidden_size`.
pub type BertOutput = BertSelfOutput;

/// One encoder layer (`encoder.layer.{i}`).
#[derive(Module, Debug)]
pub struct BertLayer {
    /// Self-attention with its output block.
    pub attention: BertAttention,
    /// Feed-forward up-projection.
    pub intermediate: BertIntermediate,
    /// Feed-forward down-projection with residual and LayerNorm.
    pub output: BertOutput,
}

impl BertLayer {
    /// A new layer for `config`.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        BertLayer {
            attention: BertAttention::new(config, device),
            intermediate: BertIntermediate::new(config, device),
            output: BertOutput::new(config.intermediate_size, config, device),
        }
    }

    /// Attention then feed-forward, each with its residual and LayerNorm.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`, and the same out.
    /// - `mask`: additive, broadcastable to `[batch, heads, seq, seq]`
    /// - `prefix`: prefix tuning's keys and values for this layer (see [`super::BertSelfAttention::forward`])
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4>>, prefix: Option<&LayerKv>) -> Tensor<3> {
        let attended = self.attention.forward(x, mask, prefix);
        self.output.forward(self.intermediate.forward(attended.clone()), attended)
    }
}

/// The stack of encoder layers (`encoder`).
#[derive(Module, Debug)]
pub struct BertEncoder {
    /// The layers, at paths `layer.{i}`.
    pub layer: Vec<BertLayer>,
}

impl BertEncoder {
    /// `num_hidden_layers` new layers.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        BertEncoder { layer: (0..config.num_hidden_layers).map(|_| BertLayer::new(config, device)).collect() }
    }

    /// Runs every layer in turn.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`, and the same out.
    /// - `mask`: additive, broadcastable to `[batch, heads, seq, seq]`
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4>>) -> Tensor<3> {
        self.layer.iter().fold(x, |x, layer| layer.forward(x, mask.clone(), None))
    }

    /// [`BertEncoder::forward`] with prefix tuning's keys and values in front of every layer's
    /// own (`prefix.layer(i)`); `mask` then covers the prefix too.
    ///
    /// # Shapes
    /// - `mask`: additive, broadcastable to `[batch, heads, seq, virtual + seq]`
    pub fn forward_with_prefix(&self, x: Tensor<3>, mask: Option<Tensor<4>>, prefix: &KvCache) -> Tensor<3> {
        self.layer.iter().enumerate().fold(x, |x, (i, layer)| layer.forward(x, mask.clone(), prefix.layer(i)))
    }
}
