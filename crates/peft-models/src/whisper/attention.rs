//! Whisper's multi-head attention (encoder self-attention, decoder self- and cross-attention) and
//! the additive masks it takes.

use burn::module::Module;
use crate::layers::attention_probs;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::AdaptedLinear;

use super::config::WhisperConfig;
use crate::cache::{KvCache, LayerKv};

/// Added to the scores of blocked keys: transformers' `finfo(float32).min`, finite so that a
/// row with every key blocked gives a uniform softmax rather than NaN.
const BLOCKED: f32 = f32::MIN;

/// transformers' `WhisperAttention`: `softmax((q_proj(x) * head_dim^-0.5) kᵀ + mask) v`, heads
/// concatenated, then `out_proj`. `k_proj` has no bias; the others do.
#[derive(Module, Debug)]
pub struct WhisperAttention {
    /// `d_model -> d_model`.
    pub q_proj: AdaptedLinear,
    /// `d_model -> d_model`, no bias.
    pub k_proj: AdaptedLinear,
    /// `d_model -> d_model`.
    pub v_proj: AdaptedLinear,
    /// `d_model -> d_model`.
    pub out_proj: AdaptedLinear,
    /// Number of heads.
    pub num_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
}

impl WhisperAttention {
    /// A new layer with `num_heads` heads for `config` (heads checked by [`WhisperConfig::validate`]).
    pub fn new(config: &WhisperConfig, num_heads: usize, device: &Device) -> Self {
        let d = config.d_model;
        WhisperAttention {
            q_proj: super::linear(d, d, true, config, device),
            k_proj: super::linear(d, d, false, config, device),
            v_proj: super::linear(d, d, true, config, device),
            out_proj: super::linear(d, d, true, config, device),
            num_heads,
            head_dim: d / num_heads.max(1),
        }
    }

    /// `[batch, len, d_model]` to `[batch, heads, len, head_dim]`.
    fn split_heads(&self, t: Tensor<3>) -> Tensor<4> {
        let [batch, len, _] = t.dims();
        t.reshape([batch, len, self.num_heads, self.head_dim]).swap_dims(1, 2)
    }

    /// The keys and values of `source` (the layer's own input, or the encoder output for
    /// cross-attention).
    ///
    /// # Shapes
    /// - `source`: `[batch, keys, d_model]`
    /// - output: `[batch, heads, keys, head_dim]` each
    pub fn key_value(&self, source: Tensor<3>) -> LayerKv {
        LayerKv { key: self.split_heads(self.k_proj.forward(source.clone())), value: self.split_heads(self.v_proj.forward(source)) }
    }

    /// Attends from `x` to `kv`.
    ///
    /// The query is scaled before the product, as transformers does (the order changes the
    /// rounding).
    ///
    /// # Shapes
    /// - `x`: `[batch, len, d_model]`
    /// - `kv`: `[batch, heads, keys, head_dim]`
    /// - `bias`: `[batch or 1, 1, len or 1, keys]`, 0 where attention is allowed
    /// - output: `[batch, len, d_model]`
    pub fn attend(&self, x: Tensor<3>, kv: &LayerKv, bias: Option<&Tensor<4>>) -> Tensor<3> {
        let [batch, len, d_model] = x.dims();
        let q = self.split_heads(self.q_proj.forward(x).mul_scalar((self.head_dim as f64).powf(-0.5)));
        let scores = q.matmul(kv.key.clone().swap_dims(2, 3));
        let out = attention_probs(scores, bias, 3).matmul(kv.value.clone());
        self.out_proj.forward(out.swap_dims(1, 2).reshape([batch, len, d_model]))
    }

    /// Self-attention: attends from `x` to the cached keys (if any) and to `x` itself, then
    /// stores `x`'s keys and values in the cache as layer `layer`.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, d_model]`, and the same out
    /// - `bias`: `[batch or 1, 1, len, seen + len]`
    pub fn forward_self(&self, x: Tensor<3>, bias: Option<&Tensor<4>>, cache: Option<(&mut KvCache, usize)>) -> Tensor<3> {
        let LayerKv { key, value } = self.key_value(x.clone());
        let (key, value) = match cache {
            Some((cache, layer)) => cache.append(layer, key, value),
            None => (key, value),
        };
        self.attend(x, &LayerKv { key, value }, bias)
    }
}

/// The additive mask of the decoder's self-attention: `len` queries at positions
/// `seen..seen + len` see keys up to their own position, and none whose `key_mask` is 0.
/// `None` when nothing is masked (a single query without padding).
///
/// # Shapes
/// - `key_mask`: `[batch, seen + len]`, 1 for real tokens
/// - output: `[batch or 1, 1, len, seen + len]`
pub(crate) fn causal_bias(key_mask: Option<&Tensor<2, Int>>, seen: usize, len: usize, device: &Device) -> Option<Tensor<4>> {
    let keys = seen + len;
    if key_mask.is_none() && len <= 1 {
        return None;
    }
    let blocked: Vec<f32> = (0..len).flat_map(|i| (0..keys).map(move |j| if j > seen + i { 1.0 } else { 0.0 })).collect();
    let mut blocked = Tensor::<4>::from_data(TensorData::new(blocked, [1, 1, len, keys]), device);
    if let Some(mask) = key_mask {
        blocked = blocked + padding(mask);
    }
    Some(to_bias(blocked))
}

/// The additive mask of cross-attention: no query sees a padded source position.
///
/// # Shapes
/// - `source_mask`: `[batch, source_len]`, 1 for real positions
/// - output: `[batch, 1, 1, source_len]`
pub(crate) fn padding_bias(source_mask: &Tensor<2, Int>) -> Tensor<4> {
    to_bias(padding(source_mask))
}

/// 1 where a key is padding, `[batch, 1, 1, keys]`.
fn padding(mask: &Tensor<2, Int>) -> Tensor<4> {
    let [batch, keys] = mask.dims();
    mask.clone().equal_elem(0).float().reshape([batch, 1, 1, keys])
}

/// 0 where `blocked` is 0, [`BLOCKED`] elsewhere.
fn to_bias(blocked: Tensor<4>) -> Tensor<4> {
    let allowed = blocked.clone().lower_elem(0.5);
    blocked.zeros_like().mask_fill(allowed.bool_not(), BLOCKED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32")
    }

    #[test]
    fn causal_with_cache_and_padding() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let m = BLOCKED;
        assert!(causal_bias(None, 3, 1, &device).is_none());
        let causal = causal_bias(None, 1, 2, &device).expect("masked");
        assert_eq!(values(causal), vec![0.0, 0.0, m, 0.0, 0.0, 0.0]);
        let mask = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 0, 1], [1, 3]), &device);
        let padded = causal_bias(Some(&mask), 1, 2, &device).expect("masked");
        assert_eq!(values(padded), vec![0.0, m, m, 0.0, m, 0.0]);
        assert_eq!(values(padding_bias(&mask)), vec![0.0, m, 0.0]);
    }
}
