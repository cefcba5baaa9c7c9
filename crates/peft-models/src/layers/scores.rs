//! Attention probabilities from raw scores, in f32 whatever the model's float type.

use burn::tensor::activation::softmax;
use burn::tensor::{FloatDType, Tensor};

/// `softmax(scores + bias)` along `dim`, computed in f32 and returned in the scores' type.
///
/// The additive bias (padding and causal masks, ALiBi, T5's position bias) is built in f32 and
/// holds large negative values; a half-precision model adds and normalises in f32 as transformers
/// upcasts its attention weights, then attends to the values in its own type. For an f32 model
/// the casts do nothing.
///
/// # Shapes
/// - `scores`: `[..., queries, keys]`; `bias`: broadcastable to it; output: as `scores`
pub fn attention_probs<const D: usize>(scores: Tensor<D>, bias: Option<&Tensor<D>>, dim: usize) -> Tensor<D> {
    let dtype = scores.dtype();
    let mut scores = scores.cast(FloatDType::F32);
    if let Some(bias) = bias {
        scores = scores + bias.clone().cast(FloatDType::F32);
    }
    softmax(scores, dim).cast(dtype)
}
