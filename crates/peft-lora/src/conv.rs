//! LoRA on 1-D and 2-D convolutions.
//!
//! `A` is a convolution with the base layer's kernel, stride and padding into `r` channels, `B` a
//! 1x1 convolution from `r` channels to the output: `h = conv(x) + s * conv_B(conv_A(dropout(x)))`.
//! Both are stored exactly as the Python library stores them (`[r, c_in, k..]`, `[c_out, r, 1..]`),
//! so files need no transposition.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv1d, Conv2d};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Tensor, TensorData};
use peft_core::{Conv1dAdapter, Conv2dAdapter, Error, Result};

macro_rules! lora_conv {
    ($name:ident, $adapter:ident, $conv:ident, $rank:literal) => {
        #[doc = concat!("LoRA on a `", stringify!($conv), "`: `h = conv(x) + s * conv_B(conv_A(dropout(x)))`.")]
        #[derive(Module, Debug)]
        pub struct $name {
            /// `conv_A`: the base kernel shape into `r` channels, no bias.
            pub lora_a: $conv,
            /// `conv_B`: 1x1 from `r` channels to the base's outputs, no bias.
            pub lora_b: $conv,
            /// Dropout on the adapter's input.
            pub dropout: Dropout,
            /// The scaling `s`.
            pub scaling: f64,
        }

        impl $name {
            /// An adapter shaped after `base` with factor kernels `a: [r, c_in, k..]`, `b: [c_out, r, 1..]`.
            pub fn new(base: &$conv, a: Tensor<$rank>, b: Tensor<$rank>, scaling: f64, dropout: f64) -> Result<Self> {
                if base.groups != 1 {
                    return Err(Error::Unsupported {
                        what: format!("LoRA on a grouped convolution (groups = {})", base.groups),
                        supported: "groups = 1".into(),
                    });
                }
                let mut lora_a = base.clone();
                lora_a.weight = Param::from_tensor(a);
                lora_a.bias = None;
                let mut lora_b = base.clone();
                lora_b.weight = Param::from_tensor(b);
                lora_b.bias = None;
                pointwise(&mut lora_b);
                Ok($name { lora_a, lora_b, dropout: DropoutConfig::new(dropout).init(), scaling })
            }

            /// From the Python library's tensors, whose layout is Burn's.
            pub fn from_torch(base: &$conv, a: TensorData, b: TensorData, scaling: f64, dropout: f64, device: &Device) -> Result<Self> {
                Self::new(base, Tensor::from_data(a, device), Tensor::from_data(b, device), scaling, dropout)
            }

            /// `s * B A` as a kernel of the base's shape `[c_out, c_in, k..]`.
            pub fn delta_weight(&self) -> Tensor<$rank> {
                let a = self.lora_a.weight.val();
                let dims = a.dims();
                let r = dims[0];
                let per_r: usize = dims[1..].iter().product();
                let b = self.lora_b.weight.val();
                let c_out = b.dims()[0];
                // B is 1x1, so the composed kernel is the product over the rank axis.
                let a2: Tensor<2> = a.reshape([r, per_r]);
                let b2: Tensor<2> = b.reshape([c_out, r]);
                let mut out_dims = dims;
                out_dims[0] = c_out;
                b2.matmul(a2).mul_scalar(self.scaling).reshape(out_dims)
            }
        }

        impl $adapter for $name {


            fn adapt_output(&self, x: &Tensor<$rank>, y: Tensor<$rank>) -> Tensor<$rank> {
                let delta = self.lora_b.forward(self.lora_a.forward(self.dropout.forward(x.clone())));
                y + delta.mul_scalar(self.scaling)
            }

            fn merge(&self, weight: Tensor<$rank>) -> Result<Tensor<$rank>> {
                Ok(weight + self.delta_weight())
            }

            fn unmerge(&self, weight: Tensor<$rank>) -> Result<Tensor<$rank>> {
                Ok(weight - self.delta_weight())
            }

            fn export(&self) -> Vec<(String, TensorData)> {
                vec![
                    ("lora_A.weight".into(), self.lora_a.weight.val().into_data()),
                    ("lora_B.weight".into(), self.lora_b.weight.val().into_data()),
                ]
            }
        }
    };
}

lora_conv!(LoraConv1d, Conv1dAdapter, Conv1d, 3);
lora_conv!(LoraConv2d, Conv2dAdapter, Conv2d, 4);

/// Makes a copied convolution a 1x1, stride 1, unpadded one (LoRA's `B`).
fn pointwise<C: Pointwise>(conv: &mut C) {
    conv.make_pointwise();
}

trait Pointwise {
    fn make_pointwise(&mut self);
}

impl Pointwise for Conv1d {
    fn make_pointwise(&mut self) {
        self.kernel_size = 1;
        self.stride = 1;
        self.dilation = 1;
        self.padding = burn::nn::PaddingConfig1d::Valid;
    }
}

impl Pointwise for Conv2d {
    fn make_pointwise(&mut self) {
        self.kernel_size = [1, 1];
        self.stride = [1, 1];
        self.dilation = [1, 1];
        self.padding = burn::nn::PaddingConfig2d::Valid;
    }
}
