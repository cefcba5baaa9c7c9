//! One pre-LayerNorm encoder layer (`vit.layers.{i}`): attention and MLP, each with a residual.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use crate::layers::attention_probs;
use burn::tensor::{Device, Tensor};
use peft_core::AdaptedLinear;

use super::config::ViTConfig;
use crate::layers::{HiddenAct, LayerNorm};

/// Multi-head self-attention with its output projection (`attention`).
#[derive(Module, Debug)]
pub struct ViTAttention {
    /// Query projection.
    pub q_proj: AdaptedLinear,
    /// Key projection.
    pub k_proj: AdaptedLinear,
    /// Value projection.
    pub v_proj: AdaptedLinear,
    /// Output projection.
    pub o_proj: AdaptedLinear,
    /// Dropout on the attention probabilities (training only).
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

impl ViTAttention {
    /// New projections for `config`.
    pub fn new(config: &ViTConfig, device: &Device) -> Self {
        let d = config.hidden_size;
        let qkv = || super::linear(d, d, config.qkv_bias, config, device);
        ViTAttention {
            q_proj: qkv(),
            k_proj: qkv(),
            v_proj: qkv(),
            o_proj: super::linear(d, d, true, config, device),
            dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            num_heads: config.num_attention_heads,
        }
    }

    /// `o_proj(softmax(q k^T / sqrt(head_dim)) v)`, heads concatenated; no mask (every patch sees all).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`, and the same out.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        let heads = |t: Tensor<3>| t.reshape([batch, seq, self.num_heads, head_dim]).swap_dims(1, 2);
        let q = heads(self.q_proj.forward(x.clone()));
        let k = heads(self.k_proj.forward(x.clone()));
        let v = heads(self.v_proj.forward(x));
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((head_dim as f64).sqrt());
        let probs = self.dropout.forward(attention_probs(scores, None, 3));
        self.o_proj.forward(probs.matmul(v).swap_dims(1, 2).reshape([batch, seq, hidden]))
    }
}

/// The feed-forward block (`mlp`): `fc2(act(fc1(x)))`.
#[derive(Module, Debug)]
pub struct ViTMlp {
    /// `hidden_size -> intermediate_size`.
    pub fc1: AdaptedLinear,
    /// `intermediate_size -> hidden_size`.
    pub fc2: AdaptedLinear,
    /// The activation.
    #[module(skip)]
    pub act: HiddenAct,
}

impl ViTMlp {
    /// A new block for `config`.
    pub fn new(config: &ViTConfig, device: &Device) -> Self {
        ViTMlp {
            fc1: super::linear(config.hidden_size, config.intermediate_size, true, config, device),
            fc2: super::linear(config.intermediate_size, config.hidden_size, true, config, device),
            act: config.hidden_act,
        }
    }

    /// `fc2(act(fc1(x)))`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`, and the same out.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2.forward(self.act.forward(self.fc1.forward(x)))
    }
}

/// One encoder layer: `x + attention(ln_before(x))`, then `x + mlp(ln_after(x))`.
#[derive(Module, Debug)]
pub struct ViTLayer {
    /// Normalises the attention input.
    pub layernorm_before: LayerNorm,
    /// Self-attention.
    pub attention: ViTAttention,
    /// Normalises the MLP input.
    pub layernorm_after: LayerNorm,
    /// The feed-forward block.
    pub mlp: ViTMlp,
    /// Dropout on both branches (training only).
    pub dropout: Dropout,
}

impl ViTLayer {
    /// A new layer for `config`.
    pub fn new(config: &ViTConfig, device: &Device) -> Self {
        ViTLayer {
            layernorm_before: LayerNorm::new(config.hidden_size, config.layer_norm_eps, device),
            attention: ViTAttention::new(config, device),
            layernorm_after: LayerNorm::new(config.hidden_size, config.layer_norm_eps, device),
            mlp: ViTMlp::new(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    /// The pre-LayerNorm residual block.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`, and the same out.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.dropout.forward(self.attention.forward(self.layernorm_before.forward(x.clone()))) + x;
        self.dropout.forward(self.mlp.forward(self.layernorm_after.forward(x.clone()))) + x
    }
}
