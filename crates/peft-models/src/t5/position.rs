//! T5's relative position buckets and the additive attention masks.

use burn::tensor::{Device, Int, Tensor, TensorData};

/// The bucket of a relative position `memory - query`, as Mesh TensorFlow / transformers compute it.
///
/// Bidirectional (encoder): half the buckets for keys after the query, half for keys before.
/// Causal (decoder): keys after the query share bucket 0. Within a direction the first half of
/// the buckets are exact distances `0..max_exact`; from there buckets grow logarithmically up to
/// `max_distance`, beyond which every distance shares the last bucket:
/// `max_exact + ln(d / max_exact) / ln(max_distance / max_exact) * (buckets - max_exact)`
/// (truncated; computed in `f32` as transformers does).
pub fn relative_position_bucket(relative: i64, bidirectional: bool, num_buckets: usize, max_distance: usize) -> usize {
    let mut buckets = num_buckets;
    let mut offset = 0;
    let distance = if bidirectional {
        buckets /= 2;
        if relative > 0 {
            offset = buckets;
        }
        relative.unsigned_abs()
    } else {
        (-relative.min(0)).unsigned_abs()
    };
    let max_exact = buckets / 2;
    let distance = usize::try_from(distance).unwrap_or(usize::MAX);
    if distance < max_exact {
        return offset + distance;
    }
    let log_ratio = ((distance as f32) / (max_exact as f32)).ln();
    let log_max = ((max_distance as f64) / (max_exact as f64)).ln() as f32;
    let large = max_exact + (log_ratio / log_max * ((buckets - max_exact) as f32)) as usize;
    offset + large.min(buckets - 1)
}

/// Bucket ids for `len` queries at positions `seen..seen + len` over keys `0..seen + len` (decoder
/// with a cache) or `0..len` (encoder, `seen` 0).
///
/// # Shapes
/// - output: `[len, keys]`
pub(crate) fn bucket_ids(len: usize, keys: usize, seen: usize, bidirectional: bool, num_buckets: usize, max_distance: usize, device: &Device) -> Tensor<2, Int> {
    let mut ids = Vec::with_capacity(len * keys);
    for i in 0..len {
        let query = (seen + i) as i64;
        for key in 0..keys as i64 {
            ids.push(relative_position_bucket(key - query, bidirectional, num_buckets, max_distance) as i64);
        }
    }
    Tensor::from_data(TensorData::new(ids, [len, keys]), device)
}

/// The additive mask of padded keys: 0 where `mask` is 1, `f32::MIN` where it is 0 (a finite
/// value, as transformers uses, so a row with every key masked stays finite).
///
/// # Shapes
/// - `mask`: `[batch, keys]`
/// - output: `[batch, 1, 1, keys]`
pub(crate) fn padding_bias(mask: &Tensor<2, Int>) -> Tensor<4> {
    let [batch, keys] = mask.dims();
    mask.clone().equal_elem(0).float().mul_scalar(f32::MIN).reshape([batch, 1, 1, keys])
}

/// The additive causal mask (with padded keys, when `key_mask` is given) for `len` queries at
/// positions `seen..seen + len` over `seen + len` keys: `f32::MIN` on keys after the query or
/// padded, 0 elsewhere.
///
/// # Shapes
/// - `key_mask`: `[batch, seen + len]`
/// - output: `[batch or 1, 1, len, seen + len]`
pub(crate) fn causal_bias(key_mask: Option<&Tensor<2, Int>>, seen: usize, len: usize, device: &Device) -> Tensor<4> {
    let keys = seen + len;
    let future: Vec<f32> = (0..len).flat_map(|i| (0..keys).map(move |j| if j > seen + i { 1.0 } else { 0.0 })).collect();
    let mut blocked = Tensor::<4>::from_data(TensorData::new(future, [1, 1, len, keys]), device);
    if let Some(mask) = key_mask {
        let batch = mask.dims()[0];
        let padded = mask.clone().equal_elem(0).float().reshape([batch, 1, 1, keys]);
        // Blocked once, whatever the reason: the sum of two `f32::MIN` would be -inf.
        blocked = blocked.max_pair(padded);
    }
    blocked.mul_scalar(f32::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_transformers() {
        // Values printed by transformers' `T5Attention._relative_position_bucket` (32 buckets, max 128).
        let bi = |r| relative_position_bucket(r, true, 32, 128);
        assert_eq!([bi(0), bi(3), bi(-3), bi(7), bi(8), bi(-8), bi(20), bi(-200), bi(500)], [0, 19, 3, 23, 24, 8, 26, 15, 31]);
        let causal = |r| relative_position_bucket(r, false, 32, 128);
        assert_eq!([causal(5), causal(0), causal(-15), causal(-16), causal(-40), causal(-1000)], [0, 0, 15, 16, 23, 31]);
        // The fixtures' 8 buckets / max distance 16, bidirectional: exact 0..2, then logarithmic.
        let small = |r| relative_position_bucket(r, true, 8, 16);
        assert_eq!([small(-1), small(-2), small(-4), small(-6), small(3)], [1, 2, 2, 3, 6]);
    }

    #[test]
    fn causal_with_cache_and_padding() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let mask = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 0, 1], [1, 3]), &device);
        let bias = causal_bias(Some(&mask), 1, 2, &device).into_data().try_to_vec::<f32>().expect("f32");
        let m = f32::MIN;
        assert_eq!(bias, vec![0.0, m, m, 0.0, m, 0.0]);
    }
}
