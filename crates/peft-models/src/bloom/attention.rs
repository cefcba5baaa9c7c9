//! BLOOM's self-attention: a fused `query_key_value` projection and ALiBi position biases.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use crate::layers::attention_probs;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::AdaptedLinear;

use super::config::BloomConfig;
use crate::cache::KvCache;
use crate::layers::{linear, real_positions};

/// transformers' `BloomAttention`: `softmax(q kᵀ / sqrt(head_dim) + alibi + mask) v`.
///
/// `query_key_value`'s output is per head `[q | k | v]` (`[heads, 3, head_dim]`, the layout
/// transformers splits it with), not three blocks of all heads as GPT-2's `c_attn`.
#[derive(Module, Debug)]
pub struct BloomAttention {
    /// `hidden_size -> 3 * hidden_size`, with bias.
    pub query_key_value: AdaptedLinear,
    /// `hidden_size -> hidden_size`, with bias.
    pub dense: AdaptedLinear,
    /// Dropout on the attention probabilities (training only).
    pub attention_dropout: Dropout,
    /// Dropout after `dense`, before the residual (training only).
    pub hidden_dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

impl BloomAttention {
    /// A new attention layer for `config`.
    pub fn new(config: &BloomConfig, device: &Device) -> Self {
        let (h, std) = (config.hidden_size, config.initializer_range);
        BloomAttention {
            query_key_value: linear(h, 3 * h, true, std, device),
            dense: linear(h, h, true, std, device),
            attention_dropout: DropoutConfig::new(config.attention_dropout).init(),
            hidden_dropout: DropoutConfig::new(config.hidden_dropout).init(),
            num_heads: config.n_head,
        }
    }

    /// Attends from `x` to the cached keys (if any) and to `x` itself, then stores `x`'s keys
    /// and values in the cache as layer `layer`. Returns `dropout(dense(attention))`, before the
    /// residual.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, hidden_size]`
    /// - `bias`: `[batch or 1, heads, len or 1, seen + len]`: ALiBi plus the causal/padding mask
    /// - output: `[batch, len, hidden_size]`
    pub fn forward(&self, x: Tensor<3>, bias: &Tensor<4>, cache: Option<(&mut KvCache, usize)>) -> Tensor<3> {
        let [batch, len, width] = x.dims();
        let (heads, d) = (self.num_heads, width / self.num_heads);
        let fused = self.query_key_value.forward(x).reshape([batch, len, heads, 3, d]);
        let part = |i: usize| fused.clone().narrow(3, i, 1).reshape([batch, len, heads, d]).swap_dims(1, 2);
        let (q, k, v) = (part(0), part(1), part(2));
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar((d as f64).powf(-0.5));
        let probs = self.attention_dropout.forward(attention_probs(scores, Some(bias), 3));
        let out = probs.matmul(v).swap_dims(1, 2).reshape([batch, len, width]);
        self.hidden_dropout.forward(self.dense.forward(out))
    }
}

/// ALiBi's per-head slopes, as transformers computes them: for `n` heads with `p` the largest
/// power of two `<= n`, `b^1 .. b^p` with `b = 2^(-8 / p)`, then (when `n > p`) the odd powers
/// `c^1, c^3, ..` of `c = 2^(-4 / p)` for the remaining `n - p` heads.
pub fn alibi_slopes(num_heads: usize) -> Vec<f32> {
    if num_heads == 0 {
        return Vec::new();
    }
    let p = 1usize << num_heads.ilog2();
    let base = 2f64.powf(-8.0 / p as f64);
    let mut slopes: Vec<f32> = (1..=p).map(|k| base.powi(k as i32) as f32).collect();
    if p != num_heads {
        let extra = 2f64.powf(-4.0 / p as f64);
        let remaining = (num_heads - p).min(p);
        slopes.extend((0..remaining).map(|i| extra.powi(2 * i as i32 + 1) as f32));
    }
    slopes
}

/// ALiBi: `slope_h * position_k` added to every score of key `k` in head `h`, the position counted
/// over real keys (`(cumsum(mask) - 1) * mask`) as transformers' `build_alibi_tensor` does.
/// Softmax ignores a shift per query, so this equals the relative `-slope * (q - k)`.
///
/// # Shapes
/// - `key_mask`: `[batch, keys]` (`None`: positions `0..keys` in every row)
/// - output: `[batch or 1, heads, 1, keys]`
pub(crate) fn alibi(slopes: &[f32], key_mask: Option<&Tensor<2, Int>>, keys: usize, device: &Device) -> Tensor<4> {
    let heads = slopes.len();
    let positions = match key_mask {
        Some(mask) => real_positions(mask.clone()).float(),
        None => Tensor::<1, Int>::arange(0..keys as i64, device).float().reshape([1, keys]),
    };
    let rows = positions.dims()[0];
    let slopes = Tensor::<4>::from_data(TensorData::new(slopes.to_vec(), [1, heads, 1, 1]), device);
    slopes * positions.reshape([rows, 1, 1, keys])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_for_powers_of_two_and_others() {
        assert_eq!(alibi_slopes(4), vec![0.25, 0.0625, 0.015625, 0.00390625]);
        // Six heads: the four of p = 4, then 2^-1 and 2^-3 from c = 2^(-4/4).
        assert_eq!(alibi_slopes(6), vec![0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]);
        assert_eq!(alibi_slopes(8)[0], 0.5);
    }
}
