//! AdaLoRA on a 2-D convolution, as the Python library's `SVDConv2d`.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{Dropout, DropoutConfig, PaddingConfig2d};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use peft_core::{Conv2dAdapter, Error, Result};

use super::layer::RANKNUM_EPS;

/// The base convolution's geometry, which the adapter's kernel follows.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGeometry {
    /// Input channels of the base convolution.
    pub channels_in: usize,
    /// Kernel height and width.
    pub kernel_size: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Padding, as the base layer has it.
    pub padding: PaddingConfig2d,
}

impl ConvGeometry {
    /// The geometry of `base`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a grouped convolution: the Python library sizes `lora_A` from
    /// all input channels (`[r, c_in * kh * kw]`), so its delta fits only `groups = 1` kernels
    /// (with groups its forward fails on the reshape).
    pub fn of(base: &Conv2d) -> Result<Self> {
        if base.groups != 1 {
            return Err(Error::Unsupported {
                what: format!("AdaLoRA on a grouped convolution (groups = {})", base.groups),
                supported: "groups = 1 (the Python library's SVDConv2d fails on grouped convolutions too)".into(),
            });
        }
        let [_, channels_in, _, _] = base.weight.lazy_shape().dims();
        Ok(ConvGeometry {
            channels_in,
            kernel_size: base.kernel_size,
            stride: base.stride,
            dilation: base.dilation,
            padding: base.padding.clone(),
        })
    }

    /// `c_in * kh * kw`: the width of `lora_A`.
    pub fn d_input(&self) -> usize {
        self.channels_in * self.kernel_size[0] * self.kernel_size[1]
    }

    /// The base layer's convolution options for an input of `height` x `width` (the padding
    /// worked out as Burn's `Conv2d` does, so the adapter's output lines up with the base's).
    fn options(&self, height: usize, width: usize) -> ConvOptions<2> {
        let pads = match self.padding {
            PaddingConfig2d::Valid => [(0, 0), (0, 0)],
            PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
            PaddingConfig2d::Same => [
                same_padding(self.kernel_size[0], self.stride[0], height),
                same_padding(self.kernel_size[1], self.stride[1], width),
            ],
        };
        ConvOptions::new_with_padding(self.stride, pads, self.dilation, 1)
    }
}

/// Burn's `Same` padding along one axis: the output has `ceil(size / stride)` positions, the
/// extra padding (if odd) at the end.
fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let size_out = size.div_ceil(stride.max(1));
    let total = if size_out > 0 { ((size_out - 1) * stride + kernel).saturating_sub(size) } else { 0 };
    (total / 2, total - total / 2)
}

/// AdaLoRA on a `Conv2d`: `h = conv(x) + conv(dropout(x), reshape(B (A ⊙ E))) * scaling / (ranknum + 1e-5)`,
/// the second convolution with the base's stride, padding and dilation and no bias.
///
/// The factors are those of [`super::AdaLoraLinear`] with the kernel flattened into the input:
/// `lora_A: [r, c_in * kh * kw]`, `lora_E: [r, 1]`, `lora_B: [c_out, r]`, as the Python library's
/// `SVDConv2d` stores them. The forward never builds the `[c_out, c_in, kh, kw]` delta kernel:
/// `(A ⊙ E)` reshaped to `[r, c_in, kh, kw]` convolves the input into `r` channels, and `B` mixes
/// them into `c_out` as a 1x1 convolution, the same sum in another order.
#[derive(Module, Debug)]
pub struct AdaLoraConv2d {
    /// `A`, shape `[r, c_in * kh * kw]`.
    pub lora_a: Param<Tensor<2>>,
    /// `E`, shape `[r, 1]`.
    pub lora_e: Param<Tensor<2>>,
    /// `B`, shape `[c_out, r]`.
    pub lora_b: Param<Tensor<2>>,
    /// Dropout on the adapter's input.
    pub dropout: Dropout,
    /// The numerator of the scale (`lora_alpha`, or the rank when `lora_alpha <= 0`).
    pub scaling: f64,
    /// The denominator of the scale without its `1e-5` (the initial rank).
    pub ranknum: f64,
    /// The base convolution's geometry.
    #[module(skip)]
    pub geometry: ConvGeometry,
    /// The ranks the allocator kept (one flag per row of `A`), applied when the adapter is
    /// exported; `None` exports every rank.
    #[module(skip)]
    pub kept: Option<Vec<bool>>,
    /// The allocator's moving averages for this layer (empty before the first update).
    #[module(skip)]
    pub(crate) importance: Option<super::allocator::Importance>,
}

impl AdaLoraConv2d {
    /// A new adapter on a convolution of `geometry` from factors in the Python library's
    /// orientation.
    ///
    /// # Shapes
    /// - `a`: `[r, c_in * kh * kw]`, `e`: `[r, 1]`, `b`: `[c_out, r]`
    pub fn new(geometry: ConvGeometry, a: Tensor<2>, e: Tensor<2>, b: Tensor<2>, scaling: f64, ranknum: f64, dropout: f64) -> Self {
        AdaLoraConv2d {
            lora_a: Param::from_tensor(a),
            lora_e: Param::from_tensor(e),
            lora_b: Param::from_tensor(b),
            dropout: DropoutConfig::new(dropout).init(),
            scaling,
            ranknum,
            geometry,
            kept: None,
            importance: None,
        }
    }

    /// A fresh adapter of rank `r` on `base`, initialised as [`super::AdaLoraLinear::init`]
    /// (`E = 0` and `A`, `B ~ N(0, 0.02²)` with `init`, else all standard normal).
    ///
    /// # Errors
    /// See [`ConvGeometry::of`].
    pub fn init(base: &Conv2d, r: usize, scaling: f64, dropout: f64, init: bool, device: &Device) -> Result<Self> {
        let geometry = ConvGeometry::of(base)?;
        let c_out = base.weight.lazy_shape().dims::<4>()[0];
        let std = if init { 0.02 } else { 1.0 };
        let a = Tensor::random([r, geometry.d_input()], Distribution::Normal(0.0, std), device);
        let b = Tensor::random([c_out, r], Distribution::Normal(0.0, std), device);
        let e = if init { Tensor::zeros([r, 1], device) } else { Tensor::random([r, 1], Distribution::Normal(0.0, 1.0), device) };
        Ok(Self::new(geometry, a, e, b, scaling, r as f64, dropout))
    }

    /// The number of ranks the layer holds (rows of `A`).
    pub fn rank(&self) -> usize {
        self.lora_a.shape().dims::<2>()[0]
    }

    /// `scaling / (ranknum + 1e-5)`, the factor on the delta.
    pub fn scale(&self) -> f64 {
        self.scaling / (self.ranknum + RANKNUM_EPS)
    }

    /// `(A ⊙ E)` as a kernel `[r, c_in, kh, kw]`.
    fn kernel_a(&self) -> Tensor<4> {
        let g = &self.geometry;
        (self.lora_a.val() * self.lora_e.val()).reshape([self.rank(), g.channels_in, g.kernel_size[0], g.kernel_size[1]])
    }

    /// `B (A ⊙ E) * scale` reshaped to the base kernel `[c_out, c_in, kh, kw]`, as the Python
    /// library's `get_delta_weight`.
    pub fn delta_weight(&self) -> Tensor<4> {
        let g = &self.geometry;
        let b = self.lora_b.val();
        let c_out = b.dims()[0];
        b.matmul(self.lora_a.val() * self.lora_e.val())
            .mul_scalar(self.scale())
            .reshape([c_out, g.channels_in, g.kernel_size[0], g.kernel_size[1]])
    }

    /// Zeroes the singular values whose flag in `keep` is false (the allocator's mask), keeping
    /// the parameter's identity and whether it requires gradients.
    ///
    /// # Shapes
    /// - `keep`: one flag per rank.
    pub fn mask_singular_values(&mut self, keep: &[bool]) {
        self.lora_e = super::svd::masked_singular_values(&self.lora_e, keep);
    }

    fn exported(&self, data: TensorData, rows: bool) -> TensorData {
        super::svd::cut_to_kept(data, self.kept.as_deref(), self.rank(), rows)
    }
}

impl Conv2dAdapter for AdaLoraConv2d {
    /// `y + conv_1x1(conv(dropout(x), A ⊙ E), B) * scaling / (ranknum + 1e-5)`: an `r`-channel
    /// intermediate, never the full delta kernel.
    ///
    /// # Shapes
    /// - `x`: `[batch, c_in, height, width]`, `y` and output: `[batch, c_out, height_out, width_out]`
    fn adapt_output(&self, x: &Tensor<4>, y: Tensor<4>) -> Tensor<4> {
        let r = self.rank();
        if r == 0 {
            return y;
        }
        let [_, _, height, width] = x.dims();
        let hidden = conv2d(peft_core::dropout(&self.dropout, x.clone()), self.kernel_a(), None, self.geometry.options(height, width));
        let c_out = self.lora_b.shape().dims::<2>()[0];
        let pointwise = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        let delta = conv2d(hidden, self.lora_b.val().reshape([c_out, r, 1, 1]), None, pointwise);
        y + delta.mul_scalar(self.scale())
    }

    fn merge(&self, weight: Tensor<4>) -> Result<Tensor<4>> {
        if self.rank() == 0 {
            return Ok(weight);
        }
        Ok(weight + self.delta_weight())
    }

    fn unmerge(&self, weight: Tensor<4>) -> Result<Tensor<4>> {
        if self.rank() == 0 {
            return Ok(weight);
        }
        Ok(weight - self.delta_weight())
    }

    /// `lora_A`, `lora_E`, `lora_B` as [`super::AdaLoraLinear`] exports them (no `.weight`,
    /// cut to the kept ranks).
    fn export(&self) -> Vec<(String, TensorData)> {
        vec![
            ("lora_A".into(), self.exported(self.lora_a.val().into_data(), true)),
            ("lora_B".into(), self.exported(self.lora_b.val().into_data(), false)),
            ("lora_E".into(), self.exported(self.lora_e.val().into_data(), true)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Tolerance;

    fn adapter(base: &Conv2d, r: usize, device: &Device) -> AdaLoraConv2d {
        AdaLoraConv2d::init(base, r, 4.0, 0.0, false, device).expect("groups = 1")
    }

    /// The activation-level forward equals a convolution with the delta kernel (Python's
    /// forward), and merging then unmerging gives the kernel back, for strides, dilations and
    /// every padding kind.
    #[test]
    fn forward_equals_the_delta_kernel_and_merge_round_trips() {
        let device = Device::flex();
        // (padding, stride, dilation); Burn's `Same` ignores dilation, so it gets none.
        let cases = [
            (PaddingConfig2d::Valid, [1, 1], [1, 1]),
            (PaddingConfig2d::Explicit(1, 2, 1, 0), [2, 3], [2, 1]),
            (PaddingConfig2d::Same, [2, 2], [1, 1]),
        ];
        for (padding, stride, dilation) in cases {
            let base = Conv2dConfig::new([3, 5], [3, 2]).with_stride(stride).with_dilation(dilation).with_padding(padding).init(&device);
            let layer = adapter(&base, 3, &device);
            let x = Tensor::<4>::random([2, 3, 9, 8], Distribution::Default, &device);
            let y = base.forward(x.clone());
            let adapted = layer.adapt_output(&x, y.clone());
            let mut delta_conv = base.clone();
            delta_conv.weight = Param::from_tensor(layer.delta_weight());
            delta_conv.bias = None;
            let expected = y + delta_conv.forward(x.clone());
            adapted.clone().into_data().assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-4));

            let mut merged = base.clone();
            merged.weight = Param::from_tensor(layer.merge(base.weight.val()).expect("merges"));
            merged.forward(x).into_data().assert_approx_eq::<f32>(&adapted.into_data(), Tolerance::absolute(1e-4));
            let back = layer.unmerge(merged.weight.val()).expect("unmerges");
            back.into_data().assert_approx_eq::<f32>(&base.weight.val().into_data(), Tolerance::absolute(1e-5));
        }
    }

    /// A fresh adapter (`E = 0`) leaves the output alone; a grouped convolution is refused.
    #[test]
    fn fresh_adapter_is_the_identity_and_groups_are_refused() {
        let device = Device::flex();
        let base = Conv2dConfig::new([2, 4], [3, 3]).init(&device);
        let layer = AdaLoraConv2d::init(&base, 2, 8.0, 0.0, true, &device).expect("groups = 1");
        assert_eq!(layer.lora_a.shape().dims::<2>(), [2, 18]);
        assert_eq!(layer.lora_b.shape().dims::<2>(), [4, 2]);
        let x = Tensor::<4>::random([1, 2, 5, 5], Distribution::Default, &device);
        let y = base.forward(x.clone());
        layer.adapt_output(&x, y.clone()).into_data().assert_approx_eq::<f32>(&y.into_data(), Tolerance::default());

        let grouped = Conv2dConfig::new([4, 4], [3, 3]).with_groups(2).init(&device);
        assert!(matches!(AdaLoraConv2d::init(&grouped, 2, 8.0, 0.0, true, &device), Err(Error::Unsupported { .. })));
    }

    /// Masked ranks are zeroed and cut from the export, rows of A and E, columns of B.
    #[test]
    fn masking_zeroes_and_export_cuts_the_dropped_ranks() {
        let device = Device::flex();
        let base = Conv2dConfig::new([2, 4], [3, 3]).init(&device);
        let mut layer = adapter(&base, 3, &device);
        layer.mask_singular_values(&[true, false, true]);
        layer.kept = Some(vec![true, false, true]);
        let e: Vec<f32> = layer.lora_e.val().into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
        assert_eq!(e[1], 0.0);
        assert!(e[0] != 0.0 && e[2] != 0.0);
        let shapes: Vec<(String, Vec<usize>)> = layer.export().into_iter().map(|(k, d)| (k, d.shape().to_vec())).collect();
        assert_eq!(shapes, vec![("lora_A".into(), vec![2, 18]), ("lora_B".into(), vec![4, 2]), ("lora_E".into(), vec![2, 1])]);
    }
}
