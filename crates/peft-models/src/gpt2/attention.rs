//! GPT-2's self-attention: one fused `c_attn` Conv1D for queries, keys and values.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use crate::layers::attention_probs;
use burn::tensor::{Device, Tensor};
use peft_core::{AdaptedLinear, AttentionHook, AttentionInputs, AttentionProjections};

use super::config::Gpt2Config;
use crate::cache::KvCache;

/// transformers' `GPT2Attention` (self-attention only): `softmax(q kᵀ · scale + mask) v`.
///
/// `c_attn` maps `x` to `[q | k | v]` (each `n_embd` wide, heads contiguous within each), so its
/// output columns split in three equal blocks, then into heads.
#[derive(Module, Debug)]
pub struct Gpt2Attention {
    /// `n_embd -> 3 * n_embd`, a Conv1D (checkpoint layout `[in, out]`).
    pub c_attn: AdaptedLinear,
    /// `n_embd -> n_embd`, a Conv1D.
    pub c_proj: AdaptedLinear,
    /// Dropout on the attention probabilities (training only).
    pub attn_dropout: Dropout,
    /// Dropout after `c_proj` (training only).
    pub resid_dropout: Dropout,
    /// Adapters on the module's output (LLaMA-Adapter), at the module's own path (`h.N.attn`).
    pub hook: AttentionHook,
    /// Number of heads.
    pub num_heads: usize,
    /// What scores are multiplied by: `head_dim^-0.5` (if `scale_attn_weights`), divided by
    /// `layer + 1` (if `scale_attn_by_inverse_layer_idx`).
    pub scaling: f64,
}

impl Gpt2Attention {
    /// The attention of block number `layer` of `config`.
    pub fn new(config: &Gpt2Config, layer: usize, device: &Device) -> Self {
        let mut scaling = if config.scale_attn_weights { (config.head_dim() as f64).powf(-0.5) } else { 1.0 };
        if config.scale_attn_by_inverse_layer_idx {
            scaling /= (layer + 1) as f64;
        }
        let h = config.n_embd;
        Gpt2Attention {
            c_attn: super::conv1d(h, 3 * h, config.initializer_range, device),
            c_proj: super::conv1d(h, h, config.initializer_range, device),
            attn_dropout: DropoutConfig::new(config.attn_pdrop).init(),
            resid_dropout: DropoutConfig::new(config.resid_pdrop).init(),
            hook: AttentionHook::default(),
            num_heads: config.n_head,
            scaling,
        }
    }

    /// Attends from `x` to the cached keys (if any) and to `x` itself, then stores `x`'s keys
    /// and values in the cache as layer `layer`.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, n_embd]`
    /// - `bias`: `[batch or 1, 1, len, seen + len]`, 0 where attention is allowed, `-inf` elsewhere
    /// - output: `[batch, len, n_embd]`
    pub fn forward(&self, x: Tensor<3>, bias: Option<&Tensor<4>>, cache: Option<(&mut KvCache, usize)>) -> Tensor<3> {
        let [batch, len, width] = x.dims();
        let (heads, d) = (self.num_heads, width / self.num_heads);
        let qkv = self.c_attn.forward(x);
        let split = |i: usize| qkv.clone().narrow(2, i * width, width).reshape([batch, len, heads, d]).swap_dims(1, 2);
        let (q, k, v) = (split(0), split(1), split(2));
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };
        let scores = q.clone().matmul(k.swap_dims(2, 3)).mul_scalar(self.scaling);
        let probs = self.attn_dropout.forward(attention_probs(scores, bias, 3));
        let out = probs.matmul(v).swap_dims(1, 2).reshape([batch, len, width]);
        let output = self.resid_dropout.forward(self.c_proj.forward(out));
        if !self.hook.is_active() {
            return output;
        }
        let inputs = AttentionInputs {
            query: &q,
            projections: AttentionProjections::Fused { c_attn: &self.c_attn },
            num_heads: heads,
            num_key_value_heads: heads,
            head_dim: d,
        };
        self.hook.apply(&inputs, output)
    }
}
