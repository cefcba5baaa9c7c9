//! One SegFormer encoder layer: efficient self-attention (keys and values spatially reduced) and
//! the Mix-FFN (a depthwise 3x3 convolution between its two dense layers).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use crate::layers::attention_probs;
use burn::tensor::{Device, Tensor};
use peft_core::{AdaptedConv2d, AdaptedLinear};

use super::config::SegformerConfig;
use crate::layers::{HiddenAct, LayerNorm};

/// `[batch, h * w, c]` to `[batch, c, h, w]`.
pub(crate) fn to_image(x: Tensor<3>, height: usize, width: usize) -> Tensor<4> {
    let [batch, _, channels] = x.dims();
    x.swap_dims(1, 2).reshape([batch, channels, height, width])
}

/// `[batch, c, h, w]` to `[batch, h * w, c]`.
pub(crate) fn to_sequence(x: Tensor<4>) -> Tensor<3> {
    x.flatten::<3>(2, 3).swap_dims(1, 2)
}

/// Shrinks the key/value grid by `sr_ratio` each way (`sequence_reduction`): a strided
/// convolution, then LayerNorm.
#[derive(Module, Debug)]
pub struct SegformerSequenceReduction {
    /// `c -> c`, kernel and stride `sr_ratio`.
    pub sequence_reduction: AdaptedConv2d,
    /// Normalises the reduced sequence.
    pub layer_norm: LayerNorm,
}

impl SegformerSequenceReduction {
    /// The reduced sequence of an `height x width` grid.
    ///
    /// # Shapes
    /// - `x`: `[batch, height * width, c]`
    /// - output: `[batch, (height / sr) * (width / sr), c]`
    pub fn forward(&self, x: Tensor<3>, height: usize, width: usize) -> Tensor<3> {
        let reduced = self.sequence_reduction.forward(to_image(x, height, width));
        self.layer_norm.forward(to_sequence(reduced))
    }
}

/// Multi-head attention whose keys and values come from the reduced grid (`attention`).
#[derive(Module, Debug)]
pub struct SegformerAttention {
    /// Query projection.
    pub q_proj: AdaptedLinear,
    /// Key projection.
    pub k_proj: AdaptedLinear,
    /// Value projection.
    pub v_proj: AdaptedLinear,
    /// Output projection.
    pub o_proj: AdaptedLinear,
    /// Present when the stage's `sr_ratio` is above 1.
    pub sequence_reduction: Option<SegformerSequenceReduction>,
    /// Dropout on the attention probabilities (training only).
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

impl SegformerAttention {
    /// `o_proj(softmax(q k^T / sqrt(head_dim)) v)` with `k`, `v` from the (reduced) grid.
    ///
    /// # Shapes
    /// - `x`: `[batch, height * width, c]`, and the same out.
    pub fn forward(&self, x: Tensor<3>, height: usize, width: usize) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        let heads = |t: Tensor<3>| {
            let len = t.dims()[1];
            t.reshape([batch, len, self.num_heads, head_dim]).swap_dims(1, 2)
        };
        let q = heads(self.q_proj.forward(x.clone()));
        let kv = match &self.sequence_reduction {
            Some(sr) => sr.forward(x, height, width),
            None => x,
        };
        let k = heads(self.k_proj.forward(kv.clone()));
        let v = heads(self.v_proj.forward(kv));
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((head_dim as f64).sqrt());
        let probs = self.dropout.forward(attention_probs(scores, None, 3));
        self.o_proj.forward(probs.matmul(v).swap_dims(1, 2).reshape([batch, seq, hidden]))
    }
}

/// The depthwise 3x3 convolution of the Mix-FFN (`dwconv`), over the token grid.
#[derive(Module, Debug)]
pub struct SegformerDepthWiseConv {
    /// `groups = channels`, kernel 3, padding 1.
    pub dwconv: AdaptedConv2d,
}

/// The Mix-FFN (`mlp`): `fc2(dropout(act(dwconv(fc1(x)))))`.
#[derive(Module, Debug)]
pub struct SegformerMixMlp {
    /// `c -> mlp_width`.
    pub fc1: AdaptedLinear,
    /// Mixes neighbouring tokens; gives the position information ViT gets from embeddings.
    pub dwconv: SegformerDepthWiseConv,
    /// `mlp_width -> c`.
    pub fc2: AdaptedLinear,
    /// The activation.
    #[module(skip)]
    pub act: HiddenAct,
    /// Dropout after the activation and after `fc2` (training only).
    pub dropout: Dropout,
}

impl SegformerMixMlp {
    /// The Mix-FFN on an `height x width` grid.
    ///
    /// # Shapes
    /// - `x`: `[batch, height * width, c]`, and the same out.
    pub fn forward(&self, x: Tensor<3>, height: usize, width: usize) -> Tensor<3> {
        let h = self.fc1.forward(x);
        let h = to_sequence(self.dwconv.dwconv.forward(to_image(h, height, width)));
        let h = self.dropout.forward(self.act.forward(h));
        self.dropout.forward(self.fc2.forward(h))
    }
}

/// One layer (`blocks.{i}`): `x + attention(ln_before(x))`, then `x + mlp(ln_after(x))`.
#[derive(Module, Debug)]
pub struct SegformerLayer {
    /// Normalises the attention input.
    pub layernorm_before: LayerNorm,
    /// Efficient self-attention.
    pub attention: SegformerAttention,
    /// Normalises the Mix-FFN input.
    pub layernorm_after: LayerNorm,
    /// The Mix-FFN.
    pub mlp: SegformerMixMlp,
    /// Dropout after attention (training only).
    pub hidden_dropout: Dropout,
}

impl SegformerLayer {
    /// A new layer of stage `s`.
    pub fn new(config: &SegformerConfig, s: usize, device: &Device) -> Self {
        let c = config.hidden_sizes[s];
        let (sr, mlp) = (config.sr_ratios[s], config.mlp_width(s));
        let lin = |i, o| super::linear(i, o, config, device);
        let sequence_reduction = (sr > 1).then(|| SegformerSequenceReduction {
            sequence_reduction: super::conv2d(c, c, [sr, sr], sr, 0, 1, true, config, device),
            layer_norm: super::layer_norm(c, device),
        });
        let hidden_dropout = || DropoutConfig::new(config.hidden_dropout_prob).init();
        SegformerLayer {
            layernorm_before: super::layer_norm(c, device),
            attention: SegformerAttention {
                q_proj: lin(c, c),
                k_proj: lin(c, c),
                v_proj: lin(c, c),
                o_proj: lin(c, c),
                sequence_reduction,
                dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
                num_heads: config.num_attention_heads[s],
            },
            layernorm_after: super::layer_norm(c, device),
            mlp: SegformerMixMlp {
                fc1: lin(c, mlp),
                dwconv: SegformerDepthWiseConv { dwconv: super::conv2d(mlp, mlp, [3, 3], 1, 1, mlp, true, config, device) },
                fc2: lin(mlp, c),
                act: config.hidden_act,
                dropout: hidden_dropout(),
            },
            hidden_dropout: hidden_dropout(),
        }
    }

    /// The two residual blocks; stochastic depth is not applied (it is the identity in eval).
    ///
    /// # Shapes
    /// - `x`: `[batch, height * width, c]`, and the same out.
    pub fn forward(&self, x: Tensor<3>, height: usize, width: usize) -> Tensor<3> {
        let attended = self.attention.forward(self.layernorm_before.forward(x.clone()), height, width);
        let x = self.hidden_dropout.forward(attended) + x;
        self.mlp.forward(self.layernorm_after.forward(x.clone()), height, width) + x
    }
}
