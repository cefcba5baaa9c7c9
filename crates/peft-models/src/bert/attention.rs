//! Multi-head self-attention (`attention.self`) and its output projection (`attention.output`).

use burn::module::{Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor};
use burn::nn::{Dropout, DropoutConfig};
use crate::layers::attention_probs;
use burn::tensor::{Device, Tensor};
use peft_core::cache::LayerKv;
use peft_core::AdaptedLinear;

use super::config::BertConfig;
use crate::layers::LayerNorm;

/// Queries, keys and values, and scaled dot-product attention over all heads.
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    /// Query projection.
    pub query: AdaptedLinear,
    /// Key projection.
    pub key: AdaptedLinear,
    /// Value projection.
    pub value: AdaptedLinear,
    /// Dropout on the attention probabilities (training only).
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

impl BertSelfAttention {
    /// New projections for `config`.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let proj = || super::linear(config.hidden_size, config.hidden_size, config, device);
        BertSelfAttention {
            query: proj(),
            key: proj(),
            value: proj(),
            dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            num_heads: config.num_attention_heads,
        }
    }

    /// `softmax(q k^T / sqrt(head_dim) + mask) v`, heads concatenated.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - `mask`: additive, broadcastable to `[batch, heads, seq, keys]` (`[batch, 1, 1, keys]`)
    /// - `prefix`: keys and values `[batch, heads, virtual, head_dim]` attended before `x`'s own
    ///   (prefix tuning), so `keys = virtual + seq`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4>>, prefix: Option<&LayerKv>) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        let heads = |t: Tensor<3>| t.reshape([batch, seq, self.num_heads, head_dim]).swap_dims(1, 2);
        let q = heads(self.query.forward(x.clone()));
        let mut k = heads(self.key.forward(x.clone()));
        let mut v = heads(self.value.forward(x));
        if let Some(prefix) = prefix {
            // A prefix learned in f32 joins a half-precision model's keys in their type.
            k = Tensor::cat(vec![prefix.key.clone().cast(k.dtype()), k], 2);
            v = Tensor::cat(vec![prefix.value.clone().cast(v.dtype()), v], 2);
        }
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((head_dim as f64).sqrt());
        let probs = peft_core::dropout(&self.dropout, attention_probs(scores, mask.as_ref(), 3));
        probs.matmul(v).swap_dims(1, 2).reshape([batch, seq, hidden])
    }
}

/// The projection after attention, with a residual connection and LayerNorm.
#[derive(Module, Debug)]
pub struct BertSelfOutput {
    /// Output projection.
    pub dense: AdaptedLinear,
    /// Normalises `dense(x) + residual`.
    pub LayerNorm: LayerNorm,
    /// Dropout before the residual (training only).
    pub dropout: Dropout,
}

impl BertSelfOutput {
    /// A new block mapping `d_input` to `hidden_size`.
    pub fn new(d_input: usize, config: &BertConfig, device: &Device) -> Self {
        BertSelfOutput {
            dense: super::linear(d_input, config.hidden_size, config, device),
            LayerNorm: LayerNorm::new(config.hidden_size, config.layer_norm_eps, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    /// `LayerNorm(dropout(dense(x)) + residual)`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_input]`
    /// - `residual`: `[batch, seq, hidden]`, and the same out.
    pub fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.LayerNorm.forward(peft_core::dropout(&self.dropout, self.dense.forward(x)) + residual)
    }
}

/// Self-attention and its output block (`attention` in transformers).
///
/// Its `Module` impl is written by hand because transformers names the first child `self`, which
/// no Rust field can be called; the module path segment is `self`, so keys match.
#[derive(Debug)]
pub struct BertAttention {
    /// Self-attention, at module path `self`.
    pub self_attention: BertSelfAttention,
    /// Output projection, at module path `output`.
    pub output: BertSelfOutput,
}

const SELF: &str = "self";
const OUTPUT: &str = "output";
const CONTAINER: &str = "Struct:BertAttention";

impl BertAttention {
    /// A new attention block for `config`.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        BertAttention { self_attention: BertSelfAttention::new(config, device), output: BertSelfOutput::new(config.hidden_size, config, device) }
    }

    /// Attention, then the output block with the input as residual.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`, and the same out.
    /// - `mask`: additive, broadcastable to `[batch, heads, seq, seq]`
    /// - `prefix`: see [`BertSelfAttention::forward`]
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4>>, prefix: Option<&LayerKv>) -> Tensor<3> {
        let attended = self.self_attention.forward(x.clone(), mask, prefix);
        self.output.forward(attended, x)
    }

    fn rebuild(self, f: impl Fn(BertSelfAttention) -> BertSelfAttention, g: impl Fn(BertSelfOutput) -> BertSelfOutput) -> Self {
        BertAttention { self_attention: f(self.self_attention), output: g(self.output) }
    }
}

impl Clone for BertAttention {
    fn clone(&self) -> Self {
        BertAttention { self_attention: self.self_attention.clone(), output: self.output.clone() }
    }
}

impl Module for BertAttention {
    fn collect_devices(&self, devices: Devices) -> Devices {
        let devices = self.self_attention.collect_devices(devices);
        self.output.collect_devices(devices)
    }

    fn fork(self, device: &Device) -> Self {
        self.rebuild(|m| m.fork(device), |m| m.fork(device))
    }

    fn to_device(self, device: &Device) -> Self {
        self.rebuild(|m| m.to_device(device), |m| m.to_device(device))
    }

    fn train(self) -> Self {
        self.rebuild(Module::train, Module::train)
    }

    fn valid(&self) -> Self {
        BertAttention { self_attention: self.self_attention.valid(), output: self.output.valid() }
    }

    fn materialize(self) -> Self {
        self.rebuild(Module::materialize, Module::materialize)
    }

    fn num_params(&self) -> usize {
        Module::num_params(&self.self_attention) + Module::num_params(&self.output)
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        visitor.enter_module(SELF, CONTAINER);
        self.self_attention.visit(visitor);
        visitor.exit_module(SELF, CONTAINER);
        visitor.enter_module(OUTPUT, CONTAINER);
        self.output.visit(visitor);
        visitor.exit_module(OUTPUT, CONTAINER);
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        mapper.enter_module(SELF, CONTAINER);
        let self_attention = self.self_attention.map(mapper);
        mapper.exit_module(SELF, CONTAINER);
        mapper.enter_module(OUTPUT, CONTAINER);
        let output = self.output.map(mapper);
        mapper.exit_module(OUTPUT, CONTAINER);
        BertAttention { self_attention, output }
    }
}

impl ModuleDisplayDefault for BertAttention {
    fn content(&self, content: Content) -> Option<Content> {
        content.set_top_level_type("BertAttention").add(SELF, &self.self_attention).add(OUTPUT, &self.output).optional()
    }

    fn num_params(&self) -> usize {
        Module::num_params(self)
    }
}

impl ModuleDisplay for BertAttention {}

impl std::fmt::Display for BertAttention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", ModuleDisplay::format(self, Default::default()))
    }
}
