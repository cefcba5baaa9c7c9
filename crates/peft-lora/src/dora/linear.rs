//! DoRA on a linear layer.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::module::linear;
use burn::tensor::{Tensor, TensorData};
use peft_core::adapted::precision::to_adapter_dtype;
use peft_core::{Error, LinearAdapter, Result};

use super::{MAGNITUDE_KEY, MergedNorm, column_norms};
use crate::LoraLinear;

/// DoRA on a linear layer: `h = x W0 + b + (f - 1) x W0 + f s (dropout(x) A) B`, with
/// `f = m / ||W0 + s A B||` per output feature.
///
/// In training with dropout the base term is recomputed on the dropped input, as the Python
/// library does: `(f - 1) dropout(x) W0`.
#[derive(Module, Debug)]
pub struct DoraLinear {
    /// The low-rank direction update (`A`, `B`, dropout, scaling).
    pub lora: LoraLinear,
    /// The magnitude `m`, shape `[d_output]`.
    pub magnitude: Param<Tensor<1>>,
    #[module(skip)]
    merged_norm: MergedNorm,
}

impl DoraLinear {
    /// DoRA from a LoRA update and a magnitude `[d_output]`.
    pub fn new(lora: LoraLinear, magnitude: Tensor<1>) -> Self {
        DoraLinear { lora, magnitude: Param::from_tensor(magnitude), merged_norm: MergedNorm::default() }
    }

    /// DoRA starting where the Python library starts: `m = ||W0 + s A B||`, so `f = 1` and the
    /// layer computes plain LoRA until `m` trains.
    ///
    /// # Shapes
    /// - `weight`: the base weight `[d_input, d_output]`
    pub fn initialised(lora: LoraLinear, weight: Tensor<2>) -> Self {
        let norms = column_norms(weight, lora.lora_a.val(), lora.lora_b.val(), lora.scaling);
        // A leaf of its own: the norms are a computed tensor, the magnitude a parameter.
        Self::new(lora, norms.detach())
    }

    /// `f = m / ||W0 + s A B||`, shape `[d_output]`.
    fn factor(&self, weight: Tensor<2>) -> Tensor<1> {
        self.magnitude.val() / column_norms(weight, self.lora.lora_a.val(), self.lora.lora_b.val(), self.lora.scaling)
    }
}

impl LinearAdapter for DoraLinear {
    /// Never called: [`AdaptedLinear`](peft_core::AdaptedLinear) calls
    /// [`adapt_output_with_base`](Self::adapt_output_with_base), since DoRA needs the base weight.
    fn adapt_output(&self, _x: &Tensor<3>, _y: Tensor<3>) -> Tensor<3> {
        panic!("DoRA needs the base layer: call LinearAdapter::adapt_output_with_base")
    }

    /// # Shapes
    /// - `x`: `[batch, tokens, d_input]`, `y` and output: `[batch, tokens, d_output]`
    fn reads_base_weight(&self) -> bool {
        true
    }

    fn adapt_output_with_base(&self, base: &Linear, x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        // In f32 whatever the base's type, as the adapter (see `peft_core::adapted::precision`).
        let weight = to_adapter_dtype(base.weight.val());
        let d_output = weight.dims()[1];
        let factor = self.factor(weight.clone()).reshape([1, 1, d_output]);
        let (input, base_term) = if peft_core::dropout_active(&self.lora.dropout, &x.device()) {
            let dropped = peft_core::dropout(&self.lora.dropout, x.clone());
            (dropped.clone(), linear(dropped, weight, None))
        } else {
            let without_bias = match &base.bias {
                Some(bias) => y.clone() - to_adapter_dtype(bias.val()).reshape([1, 1, d_output]),
                None => y.clone(),
            };
            (x.clone(), without_bias)
        };
        let update = linear(linear(input, self.lora.lora_a.val(), None), self.lora.lora_b.val(), None);
        // `(f - 1) h0 + f s u` written as `f (h0 + s u) - h0`: the backward then keeps one
        // activation-sized tensor per layer for `f`'s gradient instead of two.
        let direction = base_term.clone() + update.mul_scalar(self.lora.scaling);
        y + factor * direction - base_term
    }

    /// `W' = f (W0 + s A B)` per output column; the bias is unchanged.
    fn merge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        let [_, d_output] = weight.dims();
        let norms = column_norms(weight.clone(), self.lora.lora_a.val(), self.lora.lora_b.val(), self.lora.scaling);
        let factor = self.magnitude.val().detach() / norms.clone();
        self.merged_norm.store(norms);
        Ok(((weight + self.lora.delta_weight()) * factor.reshape([1, d_output]), bias))
    }

    /// `W0 = W' / f - s A B`, with the norms remembered by the merge.
    fn unmerge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        let [_, d_output] = weight.dims();
        let norms = self.merged_norm.take().ok_or_else(not_merged)?;
        let factor = self.magnitude.val().detach() / norms;
        Ok((weight / factor.reshape([1, d_output]) - self.lora.delta_weight(), bias))
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        let mut out = self.lora.export();
        out.push((MAGNITUDE_KEY.into(), self.magnitude.val().into_data()));
        out
    }
}

pub(super) fn not_merged() -> Error {
    Error::InvalidState("this DoRA adapter holds no norms from a merge, so it cannot be unmerged; merge it first".into())
}
