//! Attention masks and mask-derived positions of the decoders that cache keys (GPT-2, BLOOM,
//! Llama, and the encoder-decoders' self-attention).

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::cache::KvCache;

/// The mask of every key a forward attends to: the cache's keys then the new tokens'. `None` when
/// all are real, so unpadded inputs skip the padding arithmetic.
///
/// # Shapes
/// - `attention_mask`: `[batch, len]`
/// - output: `[batch, seen + len]`
pub fn full_key_mask(
    cache: Option<&KvCache>,
    attention_mask: Option<Tensor<2, Int>>,
    batch: usize,
    len: usize,
    device: &Device,
) -> Option<Tensor<2, Int>> {
    let seen = cache.map_or(0, KvCache::seen);
    let past = cache.and_then(|c| c.mask().cloned());
    match (past, attention_mask) {
        (None, None) => None,
        (Some(past), None) => Some(Tensor::cat(vec![past, Tensor::ones([batch, len], device)], 1)),
        (None, Some(mask)) if seen == 0 => Some(mask),
        (None, Some(mask)) => Some(Tensor::cat(vec![Tensor::ones([batch, seen], device), mask], 1)),
        (Some(past), Some(mask)) => Some(Tensor::cat(vec![past, mask], 1)),
    }
}

/// The additive mask for `len` queries at positions `seen..seen + len` over `seen + len` keys:
/// causal, and blind to keys whose `key_mask` is 0.
///
/// Padding keys are hidden from every query, a padding query's own included, as transformers
/// masks them: a padding query sees the real keys before it (in front of a left-padded row,
/// prompt tuning's virtual tokens), and its output enters a causal LM's loss where the next label
/// is real. Only a query with no real key to see sees itself, so no softmax row is empty (no
/// NaN); its output is meaningless and ignored. `None` when nothing is masked (one query, no
/// padding).
///
/// # Shapes
/// - `key_mask`: `[batch, seen + len]`, 1 for real tokens
/// - output: `[batch or 1, 1, len, seen + len]`, 0 where attention is allowed, `-inf` elsewhere
pub fn causal_bias(key_mask: Option<&Tensor<2, Int>>, seen: usize, len: usize, device: &Device) -> Option<Tensor<4>> {
    let keys = seen + len;
    if key_mask.is_none() && len <= 1 {
        return None;
    }
    let mut future = vec![0f32; len * keys];
    let mut off_diagonal = vec![1f32; len * keys];
    for i in 0..len {
        let q = seen + i;
        future[i * keys + q + 1..(i + 1) * keys].fill(1.0);
        off_diagonal[i * keys + q] = 0.0;
    }
    let host = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, len, keys]), device);
    let mut blocked = host(future);
    if let Some(mask) = key_mask {
        let batch = mask.dims()[0];
        let padding = mask.clone().equal_elem(0).float().reshape([batch, 1, 1, keys]);
        blocked = blocked + padding;
        // Rows with nothing left to see get their own key back.
        let empty = blocked.clone().greater_elem(0.5).float().min_dim(3);
        let diagonal = host(off_diagonal).neg().add_scalar(1.0);
        blocked = blocked - (empty * diagonal).mul_scalar(2.0);
    }
    let masked = blocked.clone().greater_elem(0.5);
    Some(blocked.zeros_like().mask_fill(masked, f32::NEG_INFINITY))
}

/// Each key's position counted over real tokens only, `(cumsum(mask) - 1) * mask`: what
/// transformers' `generate` gives GPT-2 as `position_ids` and what BLOOM's ALiBi multiplies.
/// Padding keys get 0.
///
/// # Shapes
/// - `key_mask`: `[batch, keys]`, and the same out.
pub fn real_positions(key_mask: Tensor<2, Int>) -> Tensor<2, Int> {
    (key_mask.clone().cumsum(1) - 1) * key_mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(v: Vec<i64>) -> Tensor<2, Int> {
        let n = v.len();
        Tensor::from_data(TensorData::new(v, [1, n]), &peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in"))
    }

    fn bias_values(key_mask: Option<Vec<i64>>, seen: usize, len: usize) -> Vec<f32> {
        let mask = key_mask.map(ints);
        let bias = causal_bias(mask.as_ref(), seen, len, &peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in")).expect("a mask");
        bias.into_data().try_to_vec::<f32>().expect("f32")
    }

    #[test]
    fn causal_and_padding() {
        let inf = f32::NEG_INFINITY;
        assert_eq!(bias_values(None, 0, 2), vec![0.0, inf, 0.0, 0.0]);
        // One cached key; the key at index 1 is padding: blocked for every query, its own too.
        assert_eq!(bias_values(Some(vec![1, 0, 1]), 1, 2), vec![0.0, inf, inf, 0.0, inf, 0.0]);
        // A padding query with no real key before it sees itself (no empty softmax row).
        assert_eq!(bias_values(Some(vec![0, 1]), 0, 2), vec![0.0, inf, inf, 0.0]);
        assert!(causal_bias(None, 5, 1, &peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in")).is_none());
    }

    #[test]
    fn positions_skip_padding() {
        let positions = real_positions(ints(vec![0, 0, 1, 1, 0, 1]));
        assert_eq!(positions.into_data().convert::<i64>().try_into_vec::<i64>().expect("i64"), vec![0, 0, 0, 1, 0, 2]);
    }
}
