//! How LoRA factors start, as the Python library starts them.

use burn::tensor::{Device, Distribution, Tensor};
use peft_core::InitLoraWeights;

/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`: PyTorch's Kaiming-uniform with `a = sqrt(5)`, the default
/// initialisation of `nn.Linear` and `nn.Conv*` weights and of LoRA's `A`.
pub(crate) fn kaiming<const D: usize>(shape: [usize; D], fan_in: usize, device: &Device) -> Tensor<D> {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Tensor::random(shape, Distribution::Uniform(-bound, bound), device)
}

/// The factors `(A, B)` of a linear-like adapter, in Burn's layout `A: [fan_in.., r]`-style shapes
/// given by the caller. `a_fan_in` and `b_fan_in` are the PyTorch fan-ins of each factor.
pub(crate) fn factors<const DA: usize, const DB: usize>(
    init: &InitLoraWeights,
    r: usize,
    a: ([usize; DA], usize),
    b: ([usize; DB], usize),
    device: &Device,
) -> (Tensor<DA>, Tensor<DB>) {
    match init {
        // `B = 0`: the adapter starts as the identity.
        InitLoraWeights::Gaussian => {
            (Tensor::random(a.0, Distribution::Normal(0.0, 1.0 / r as f64), device), Tensor::zeros(b.0, device))
        }
        InitLoraWeights::Random => (kaiming(a.0, a.1, device), kaiming(b.0, b.1, device)),
        _ => (kaiming(a.0, a.1, device), Tensor::zeros(b.0, device)),
    }
}

