//! Base weights kept block-quantized in memory (QLoRA): a linear layer's frozen weight stays in
//! its file's packed blocks (GGUF's Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, ...) and is dequantized inside
//! the forward, one layer at a time, and again inside the backward.
//!
//! # Why a custom operation
//! `y = x Wᵀ` through Burn's own matmul would make autodiff keep the dequantized `W` of every
//! layer until the backward pass (it needs `W` for `∂L/∂x = ∂L/∂y W`), so a training step would
//! hold the whole model in f32 again. [`packed_matmul`] is a Burn backend extension whose backward
//! keeps only a handle to the packed blocks and dequantizes a second time: a step holds the packed
//! weights, one dequantized layer, and the activations. The weight itself gets no gradient (it is
//! frozen; adapters beside it learn).
//!
//! The packed form comes from the file reader (`peft-io` implements [`PackedWeight`] for GGUF
//! blocks) or from Burn's own quantization ([`quantize_base_weights`], for a model loaded from
//! safetensors); this module only needs "dequantize to f32".

mod burn_quant;
mod op;

pub use burn_quant::{BLOCK, BaseQuantization, BurnQuantized, Int4Blocks, quantize_base_weights};

use burn::tensor::{Device, Tensor, TensorData};
use std::fmt::Debug;
use std::sync::Arc;

/// A frozen weight matrix in a block-quantized format.
///
/// Layout: `[d_output, d_input]` row-major once dequantized (`nn.Linear`'s and GGUF's order: each
/// output row's `d_input` weights are contiguous blocks).
pub trait PackedWeight: Debug + Send + Sync {
    /// `[d_input, d_output]`, as [`super::AdaptedLinear::dims`] reports a layer.
    fn dims(&self) -> [usize; 2];
    /// The format's name as its file names it (`Q4_1`).
    fn format(&self) -> &str;
    /// Bytes the packed blocks take in memory.
    fn packed_bytes(&self) -> usize;
    /// The weights in f32, `[d_output, d_input]` row-major: `d_output · d_input` values.
    fn dequantize(&self) -> Vec<f32>;
}

/// A shared handle on a [`PackedWeight`]; clones share the blocks.
#[derive(Clone, Debug)]
pub struct PackedBase(pub Arc<dyn PackedWeight>);

impl PackedBase {
    /// Wraps packed blocks.
    pub fn new(weight: impl PackedWeight + 'static) -> Self {
        PackedBase(Arc::new(weight))
    }

    /// `[d_input, d_output]`.
    pub fn dims(&self) -> [usize; 2] {
        self.0.dims()
    }

    /// The weight dequantized to f32 in Burn's linear layout, `[d_input, d_output]`, on `device`
    /// (a constant: no gradient is tracked through it).
    pub fn dequantized(&self, device: &Device) -> Tensor<2> {
        let [d_input, d_output] = self.dims();
        let out_in = Tensor::<2>::from_data(TensorData::new(self.0.dequantize(), [d_output, d_input]), device);
        out_in.transpose()
    }

    /// `x W` with `W` dequantized inside the operation (and again in the backward), never held.
    ///
    /// On a backend without the extension (everything but the default CPU backend today) this
    /// falls back to a plain matmul with the dequantized weight: the same result, but autodiff
    /// then keeps that weight until the backward.
    ///
    /// # Shapes
    /// - `x`: `[rows, d_input]` (f32), output `[rows, d_output]` (f32)
    pub fn matmul(&self, x: Tensor<2>) -> Tensor<2> {
        if op::supported(&x.device()) {
            return op::packed_matmul(x, self.clone());
        }
        let weight = self.dequantized(&x.device());
        x.matmul(weight)
    }
}

#[cfg(test)]
mod tests;
