//! Grouped-query self-attention with RoPE, and the masks it takes.

use burn::module::Module;
use crate::layers::attention_probs;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{AdaptedLinear, AttentionHook, AttentionInputs, AttentionProjections};

use crate::cache::KvCache;
use super::config::LlamaConfig;
use crate::layers::{RotaryEmbedding, linear};

/// transformers' `LlamaAttention`: `softmax(q kᵀ / sqrt(head_dim) + mask) v`, with RoPE on `q`
/// and `k` and `num_attention_heads / num_key_value_heads` query heads sharing each key/value head.
#[derive(Module, Debug)]
pub struct LlamaAttention {
    /// `hidden_size -> num_attention_heads * head_dim`.
    pub q_proj: AdaptedLinear,
    /// `hidden_size -> num_key_value_heads * head_dim`.
    pub k_proj: AdaptedLinear,
    /// `hidden_size -> num_key_value_heads * head_dim`.
    pub v_proj: AdaptedLinear,
    /// `num_attention_heads * head_dim -> hidden_size`.
    pub o_proj: AdaptedLinear,
    /// Adapters on the module's output (LLaMA-Adapter), at the module's own path.
    pub hook: AttentionHook,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
}

impl LlamaAttention {
    /// A new layer for `config` (biases as [`LlamaConfig::qkv_bias`] / [`LlamaConfig::o_bias`]).
    pub fn new(config: &LlamaConfig, device: &Device) -> Self {
        let (heads, kv, d) = (config.num_attention_heads, config.num_key_value_heads(), config.head_dim());
        let proj = |i, o, bias| linear(i, o, bias, config.initializer_range, device);
        LlamaAttention {
            q_proj: proj(config.hidden_size, heads * d, config.qkv_bias()),
            k_proj: proj(config.hidden_size, kv * d, config.qkv_bias()),
            v_proj: proj(config.hidden_size, kv * d, config.qkv_bias()),
            o_proj: proj(heads * d, config.hidden_size, config.o_bias()),
            hook: AttentionHook::default(),
            num_heads: heads,
            num_key_value_heads: kv,
            head_dim: d,
        }
    }

    /// Attends from `x` to the cached keys (if any) and to `x` itself, then stores `x`'s keys
    /// and values in the cache as layer `layer`.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, hidden_size]`
    /// - `cos`, `sin`: `[1 or batch, 1, len, head_dim]` (from [`RotaryEmbedding::cos_sin`] or
    ///   [`RotaryEmbedding::cos_sin_at`])
    /// - `bias`: `[batch or 1, 1, 1, len, seen + len]`, 0 where attention is allowed, `-inf` elsewhere
    /// - output: `[batch, len, hidden_size]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        (cos, sin): (&Tensor<4>, &Tensor<4>),
        bias: Option<&Tensor<5>>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor<3> {
        let [batch, len, _] = x.dims();
        let (heads, kv, d) = (self.num_heads, self.num_key_value_heads, self.head_dim);
        let split = |t: Tensor<3>, n: usize| t.reshape([batch, len, n, d]).swap_dims(1, 2);
        let q = RotaryEmbedding::apply(split(self.q_proj.forward(x.clone()), heads), cos, sin);
        let k = RotaryEmbedding::apply(split(self.k_proj.forward(x.clone()), kv), cos, sin);
        let v = split(self.v_proj.forward(x), kv);
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };
        // The hook's adapters attend from the same rotated queries (kept only when one may act).
        let hook_query = self.hook.is_active().then(|| q.clone());
        let keys = k.dims()[2];
        let group = heads / kv;
        // The `group` query heads of one key/value head are stacked along the token axis, so one
        // batched product serves them all without copying keys and values `group` times.
        let q = q.reshape([batch, kv, group * len, d]);
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar((d as f64).powf(-0.5));
        let scores = scores.reshape([batch, kv, group, len, keys]);
        let probs = attention_probs(scores, bias, 4).reshape([batch, kv, group * len, keys]);
        let out = probs.matmul(v).reshape([batch, heads, len, d]).swap_dims(1, 2).reshape([batch, len, heads * d]);
        let output = self.o_proj.forward(out);
        match hook_query {
            Some(query) => {
                let inputs = AttentionInputs {
                    query: &query,
                    projections: AttentionProjections::Separate { k_proj: &self.k_proj, v_proj: &self.v_proj, o_proj: &self.o_proj },
                    num_heads: heads,
                    num_key_value_heads: kv,
                    head_dim: d,
                };
                self.hook.apply(&inputs, output)
            }
            None => output,
        }
    }
}

/// The additive attention mask for `len` queries at positions `seen..seen + len` over
/// `seen + len` keys: causal, limited to the last `window` positions when given (transformers'
/// sliding window, `q - k < window`), and blind to keys whose `key_mask` is 0.
///
/// A query always sees itself, so a padding query never has an empty row (no NaN from softmax);
/// its output is meaningless and ignored. `None` when nothing is masked (one query, no padding,
/// no window in reach).
///
/// # Shapes
/// - `key_mask`: `[batch, seen + len]`, 1 for real tokens
/// - output: `[batch or 1, 1, 1, len, seen + len]`
pub(crate) fn attention_bias(
    key_mask: Option<&Tensor<2, Int>>,
    seen: usize,
    len: usize,
    window: Option<usize>,
    device: &Device,
) -> Option<Tensor<5>> {
    let keys = seen + len;
    let window = window.filter(|w| *w < keys);
    if key_mask.is_none() && len <= 1 && window.is_none() {
        return None;
    }
    let mut blocked = vec![0f32; len * keys];
    let mut off_diagonal = vec![1f32; len * keys];
    for i in 0..len {
        let q = seen + i;
        for j in 0..keys {
            let too_far = window.is_some_and(|w| j + w <= q);
            if j > q || too_far {
                blocked[i * keys + j] = 1.0;
            }
        }
        off_diagonal[i * keys + q] = 0.0;
    }
    let host = |v: Vec<f32>| Tensor::<5>::from_data(TensorData::new(v, [1, 1, 1, len, keys]), device);
    let mut blocked = host(blocked);
    if let Some(mask) = key_mask {
        let batch = mask.dims()[0];
        let padding = mask.clone().equal_elem(0).float().reshape([batch, 1, 1, 1, keys]);
        blocked = blocked + padding * host(off_diagonal);
    }
    let allowed = blocked.clone().lower_elem(0.5);
    Some(blocked.zeros_like().mask_fill(allowed.bool_not(), f32::NEG_INFINITY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bias_values(key_mask: Option<Vec<i64>>, seen: usize, len: usize, window: Option<usize>) -> Vec<f32> {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let mask = key_mask.map(|m| {
            let n = m.len();
            Tensor::<2, Int>::from_data(TensorData::new(m, [1, n]), &device)
        });
        attention_bias(mask.as_ref(), seen, len, window, &device).expect("succeeds").into_data().try_to_vec::<f32>().expect("succeeds")
    }

    #[test]
    fn causal_padding_and_window() {
        let inf = f32::NEG_INFINITY;
        assert_eq!(bias_values(None, 0, 2, None), vec![0.0, inf, 0.0, 0.0]);
        // One cached key; the key at index 1 is padding: blocked except for its own query.
        assert_eq!(bias_values(Some(vec![1, 0, 1]), 1, 2, None), vec![0.0, 0.0, inf, 0.0, inf, 0.0]);
        // Window 2: query 2 no longer sees key 0.
        assert_eq!(bias_values(None, 0, 3, Some(2)), vec![0.0, inf, inf, 0.0, 0.0, inf, inf, 0.0, 0.0]);
    }
}
