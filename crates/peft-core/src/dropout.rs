//! Dropout with a cheap mask on CPU backends.
//!
//! Burn's `Dropout::forward` draws its mask element by element from one ChaCha generator behind
//! a global mutex (about 12 ns an element on the flex backend), then multiplies twice (by the
//! mask, then by `1 / keep`). A BERT training step draws some ten million such elements, a third
//! of the step. [`dropout`] gives the same layer the same semantics (zero with probability `p`,
//! scale the rest by `1 / (1 - p)`; only in training, on an autodiff device) with a counter-based
//! mask (SplitMix64, about 1 ns an element) that already holds `1 / keep`, so one multiply.
//!
//! The mask's seed is drawn from the backend's generator, so `device.seed(..)` still makes runs
//! repeatable. Other backends (GPUs) keep Burn's own path, whose mask never leaves the device.

use crate::Backend;
use burn::nn::Dropout;
use burn::tensor::{DType, Device, Distribution, Int, Tensor, TensorData};

/// `layer` applied to `x`: `x * mask / (1 - p)`, a fresh Bernoulli(`1 - p`) mask per call.
///
/// The identity when `layer` is not training, `p` is 0, or `x` is not on an autodiff device,
/// exactly as `Dropout::forward`.
///
/// # Shapes
/// - `x`: any, and the same out.
pub fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !dropout_active(layer, &device) {
        return x;
    }
    if x.dtype() != DType::F32 || !host_memory(&device) {
        return layer.forward(x);
    }
    let keep = 1.0 - layer.prob;
    let mask = keep_mask(x.shape().dims::<D>(), keep, seed(&device));
    x * Tensor::from_data(mask, &device)
}

/// Whether `layer` drops anything on `device`: it is training, `p > 0`, and the device is an
/// autodiff one. (DoRA computes its base term differently when it does, as the Python library.)
pub fn dropout_active(layer: &Dropout, device: &Device) -> bool {
    layer.training.is_enabled() && layer.prob > 0.0 && device.is_autodiff()
}

/// Whether tensors on `device` live in host memory (see [`Backend::host_memory`]), where a mask
/// built on the CPU costs nothing to hand over.
fn host_memory(device: &Device) -> bool {
    Backend::of(device).is_some_and(Backend::host_memory)
}

/// A 62-bit seed from the backend's generator (so `device.seed` governs the masks).
fn seed(device: &Device) -> u64 {
    let draw = Tensor::<1, Int>::random([2], Distribution::Uniform(0.0, 2_147_483_647.0), device);
    let words = draw.into_data().convert::<i64>().try_to_vec::<i64>().unwrap_or_default();
    words.iter().fold(0u64, |acc, &w| (acc << 31) ^ w as u64)
}

/// `1 / keep` where a uniform 32-bit draw falls below `keep * 2^32`, else 0.
fn keep_mask<const D: usize>(dims: [usize; D], keep: f64, seed: u64) -> TensorData {
    let n: usize = dims.iter().product();
    let threshold = (keep * 4_294_967_296.0).min(4_294_967_295.0) as u64;
    let scale = (1.0 / keep) as f32;
    let mut mask = Vec::with_capacity(n);
    let mut counter = seed;
    while mask.len() < n {
        counter = counter.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let bits = splitmix(counter);
        for word in [bits & 0xFFFF_FFFF, bits >> 32] {
            if mask.len() < n {
                mask.push(if word < threshold { scale } else { 0.0 });
            }
        }
    }
    TensorData::new(mask, dims)
}

/// SplitMix64's output function: a well-mixed 64-bit value per counter.
fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;

    #[test]
    fn the_mask_keeps_the_right_share_scaled() {
        let data = keep_mask([100_000], 0.9, 7);
        let v = data.try_to_vec::<f32>().expect("f32");
        let kept = v.iter().filter(|&&m| m != 0.0).count() as f64 / v.len() as f64;
        assert!((kept - 0.9).abs() < 0.005, "kept {kept}");
        assert!(v.iter().all(|&m| m == 0.0 || (m - 1.0 / 0.9).abs() < 1e-6));
        assert_ne!(keep_mask([64], 0.5, 1).try_to_vec::<f32>().expect("f32"), keep_mask([64], 0.5, 2).try_to_vec::<f32>().expect("f32"));
    }

    #[test]
    fn training_drops_and_scales_and_a_plain_device_is_the_identity() {
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.25).init();
        let x = Tensor::<2>::ones([64, 64], &device);
        let y = dropout(&layer, x.clone()).into_data().try_to_vec::<f32>().expect("f32");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        let dropped = y.iter().filter(|&&v| v == 0.0).count();
        assert!((700..1350).contains(&dropped), "dropped {dropped} of 4096");
        let plain = Tensor::<2>::ones([4, 4], &Device::flex());
        assert_eq!(dropout(&layer, plain).into_data().try_to_vec::<f32>().expect("f32"), vec![1.0; 16]);
    }
}
