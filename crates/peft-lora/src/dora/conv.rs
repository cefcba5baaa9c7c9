//! DoRA on 1-D and 2-D convolutions.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv1d, Conv2d};
use burn::tensor::{Tensor, TensorData};
use peft_core::adapted::precision::to_adapter_dtype;
use peft_core::{Conv1dAdapter, Conv2dAdapter, Result};

use super::linear::not_merged;
use super::{MAGNITUDE_KEY, MergedNorm, column_norms};
use crate::{LoraConv1d, LoraConv2d};

/// `||W0 + s B A||` per output channel of a kernel `[c_out, c_in, k..]`: the kernel flattened to
/// `[c_in * k.., c_out]`, as a linear layer's weight, and the factors likewise.
fn channel_norms<const R: usize>(weight: Tensor<R>, a: Tensor<R>, b: Tensor<R>, scaling: f64) -> Tensor<1> {
    let c_out = weight.dims()[0];
    let r = a.dims()[0];
    let per_channel = weight.dims()[1..].iter().product::<usize>();
    let weight: Tensor<2> = weight.reshape([c_out, per_channel]).transpose();
    let a: Tensor<2> = a.reshape([r, per_channel]).transpose();
    let b: Tensor<2> = b.reshape([c_out, r]).transpose();
    column_norms(weight, a, b, scaling)
}

/// `t: [c]` as `[1.., c (at axis), 1..]` of rank `R`.
fn along<const R: usize>(t: Tensor<1>, axis: usize) -> Tensor<R> {
    let mut dims = [1usize; R];
    dims[axis] = t.dims()[0];
    t.reshape(dims)
}

macro_rules! dora_conv {
    ($name:ident, $lora:ident, $adapter:ident, $conv:ident, $rank:literal) => {
        #[doc = concat!("DoRA on a `", stringify!($conv), "`: `h = conv(x) + (f - 1) conv0(x) + f s conv_B(conv_A(x))`,")]
        /// with `f = m / ||W0 + s B A||` per output channel and `conv0` the base convolution
        /// without its bias.
        #[derive(Module, Debug)]
        pub struct $name {
            /// The low-rank direction update.
            pub lora: $lora,
            /// The magnitude `m`, one per output channel (the Python library's file holds it as
            /// `[1, c_out, 1..]`).
            pub magnitude: Param<Tensor<1>>,
            #[module(skip)]
            merged_norm: MergedNorm,
        }

        impl $name {
            /// DoRA from a LoRA update and a magnitude `[c_out]`.
            pub fn new(lora: $lora, magnitude: Tensor<1>) -> Self {
                $name { lora, magnitude: Param::from_tensor(magnitude), merged_norm: MergedNorm::default() }
            }

            /// DoRA starting at `m = ||W0 + s B A||` (so `f = 1`), for the base kernel `weight`.
            pub fn initialised(lora: $lora, weight: Tensor<$rank>) -> Self {
                let norms = channel_norms(weight, lora.lora_a.weight.val(), lora.lora_b.weight.val(), lora.scaling);
                // A leaf of its own: the norms are a computed tensor, the magnitude a parameter.
        Self::new(lora, norms.detach())
            }

            fn norms(&self, weight: Tensor<$rank>) -> Tensor<1> {
                channel_norms(weight, self.lora.lora_a.weight.val(), self.lora.lora_b.weight.val(), self.lora.scaling)
            }
        }

        impl $adapter for $name {
            /// Never called: the adapted layer calls `adapt_output_with_base`, since DoRA needs the
            /// base kernel.
            fn adapt_output(&self, _x: &Tensor<$rank>, _y: Tensor<$rank>) -> Tensor<$rank> {
                panic!("DoRA needs the base layer: call adapt_output_with_base")
            }

            fn adapt_output_with_base(&self, base: &$conv, x: &Tensor<$rank>, y: Tensor<$rank>) -> Tensor<$rank> {
                // In f32 whatever the base's type, as the adapter (see `peft_core::adapted::precision`).
                let factor: Tensor<$rank> = along(self.magnitude.val() / self.norms(to_adapter_dtype(base.weight.val())), 1);
                let (input, base_term) = if peft_core::dropout_active(&self.lora.dropout, &x.device()) {
                    let dropped = self.lora.dropout.forward(x.clone());
                    let mut plain = base.clone();
                    plain.bias = None;
                    let kernel_dtype = plain.weight.val().dtype();
                    (dropped.clone(), to_adapter_dtype(plain.forward(dropped.cast(kernel_dtype))))
                } else {
                    let without_bias = match &base.bias {
                        Some(bias) => y.clone() - along::<$rank>(to_adapter_dtype(bias.val()), 1),
                        None => y.clone(),
                    };
                    (x.clone(), without_bias)
                };
                let update = self.lora.lora_b.forward(self.lora.lora_a.forward(input)).mul_scalar(self.lora.scaling);
                // `f (h0 + s u) - h0`: one activation kept for `f`'s gradient (see DoraLinear).
                let direction = base_term.clone() + update;
                y + factor * direction - base_term
            }

            fn merge(&self, weight: Tensor<$rank>) -> Result<Tensor<$rank>> {
                let norms = self.norms(weight.clone());
                let factor = self.magnitude.val().detach() / norms.clone();
                self.merged_norm.store(norms);
                Ok((weight + self.lora.delta_weight()) * along::<$rank>(factor, 0))
            }

            fn unmerge(&self, weight: Tensor<$rank>) -> Result<Tensor<$rank>> {
                let factor = self.magnitude.val().detach() / self.merged_norm.take().ok_or_else(not_merged)?;
                Ok(weight / along::<$rank>(factor, 0) - self.lora.delta_weight())
            }

            fn export(&self) -> Vec<(String, TensorData)> {
                let mut out = self.lora.export();
                out.push((MAGNITUDE_KEY.into(), along::<$rank>(self.magnitude.val(), 1).into_data()));
                out
            }
        }
    };
}

dora_conv!(DoraConv1d, LoraConv1d, Conv1dAdapter, Conv1d, 3);
dora_conv!(DoraConv2d, LoraConv2d, Conv2dAdapter, Conv2d, 4);
