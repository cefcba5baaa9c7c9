//! AdaLoRA on a 2-D convolution, as the Python library's `SVDConv2d`.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use peft_core::{Conv2dAdapter, Error, LinearAdapter, Result};

use super::AdaLoraLinear;

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
/// The factors are an [`AdaLoraLinear`] over the kernel flattened into the input:
/// `lora_A: [r, c_in * kh * kw]`, `lora_E: [r, 1]`, `lora_B: [c_out, r]`, as the Python library's
/// `SVDConv2d` stores them; so the allocator's masks, the kept ranks and the file keys are the
/// linear layer's. The forward never builds the `[c_out, c_in, kh, kw]` delta kernel:
/// `(A ⊙ E)` reshaped to `[r, c_in, kh, kw]` convolves the input into `r` channels, and `B` mixes
/// them into `c_out` as a 1x1 convolution, the same sum in another order.
#[derive(Module, Debug)]
pub struct AdaLoraConv2d {
    /// `A`, `E`, `B`, dropout, scale, kept ranks and importance, as on a linear layer of width
    /// `c_in * kh * kw`.
    pub svd: AdaLoraLinear,
    /// The base convolution's geometry.
    #[module(skip)]
    pub geometry: ConvGeometry,
}

impl AdaLoraConv2d {
    /// A new adapter on a convolution of `geometry` from factors in the Python library's
    /// orientation.
    ///
    /// # Shapes
    /// - `a`: `[r, c_in * kh * kw]`, `e`: `[r, 1]`, `b`: `[c_out, r]`
    pub fn new(geometry: ConvGeometry, a: Tensor<2>, e: Tensor<2>, b: Tensor<2>, scaling: f64, ranknum: f64, dropout: f64) -> Self {
        AdaLoraConv2d { svd: AdaLoraLinear::new(a, e, b, scaling, ranknum, dropout), geometry }
    }

    /// A fresh adapter of rank `r` on `base`, initialised as [`AdaLoraLinear::init`]
    /// (`E = 0` and `A`, `B ~ N(0, 0.02²)` with `init`, else all standard normal).
    ///
    /// # Errors
    /// See [`ConvGeometry::of`].
    pub fn init(base: &Conv2d, r: usize, scaling: f64, dropout: f64, init: bool, device: &Device) -> Result<Self> {
        let geometry = ConvGeometry::of(base)?;
        let c_out = base.weight.lazy_shape().dims::<4>()[0];
        let svd = AdaLoraLinear::init(geometry.d_input(), c_out, r, scaling, dropout, init, device);
        Ok(AdaLoraConv2d { svd, geometry })
    }

    /// The number of ranks the layer holds (rows of `A`).
    pub fn rank(&self) -> usize {
        self.svd.rank()
    }

    /// `(A ⊙ E)` as a kernel `[r, c_in, kh, kw]`.
    fn kernel_a(&self) -> Tensor<4> {
        let g = &self.geometry;
        (self.svd.lora_a.val() * self.svd.lora_e.val()).reshape([self.rank(), g.channels_in, g.kernel_size[0], g.kernel_size[1]])
    }

    /// `B (A ⊙ E) * scale` reshaped to the base kernel `[c_out, c_in, kh, kw]`, as the Python
    /// library's `get_delta_weight`.
    pub fn delta_weight(&self) -> Tensor<4> {
        let g = &self.geometry;
        let delta = self.svd.delta_weight().transpose(); // [c_out, c_in * kh * kw]
        let c_out = delta.dims()[0];
        delta.reshape([c_out, g.channels_in, g.kernel_size[0], g.kernel_size[1]])
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
        let hidden = conv2d(peft_core::dropout(&self.svd.dropout, x.clone()), self.kernel_a(), None, self.geometry.options(height, width));
        let c_out = self.svd.lora_b.shape().dims::<2>()[0];
        let pointwise = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        let delta = conv2d(hidden, self.svd.lora_b.val().reshape([c_out, r, 1, 1]), None, pointwise);
        y + delta.mul_scalar(self.svd.scale())
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

    /// `lora_A`, `lora_E`, `lora_B` exactly as [`AdaLoraLinear`] exports them (no `.weight`,
    /// cut to the kept ranks).
    fn export(&self) -> Vec<(String, TensorData)> {
        LinearAdapter::export(&self.svd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::Distribution;
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
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
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
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let base = Conv2dConfig::new([2, 4], [3, 3]).init(&device);
        let layer = AdaLoraConv2d::init(&base, 2, 8.0, 0.0, true, &device).expect("groups = 1");
        assert_eq!(layer.svd.lora_a.shape().dims::<2>(), [2, 18]);
        assert_eq!(layer.svd.lora_b.shape().dims::<2>(), [4, 2]);
        let x = Tensor::<4>::random([1, 2, 5, 5], Distribution::Default, &device);
        let y = base.forward(x.clone());
        layer.adapt_output(&x, y.clone()).into_data().assert_approx_eq::<f32>(&y.into_data(), Tolerance::default());

        let grouped = Conv2dConfig::new([4, 4], [3, 3]).with_groups(2).init(&device);
        assert!(matches!(AdaLoraConv2d::init(&grouped, 2, 8.0, 0.0, true, &device), Err(Error::Unsupported { .. })));
    }

    /// Masked ranks are zeroed and cut from the export, rows of A and E, columns of B.
    #[test]
    fn masking_zeroes_and_export_cuts_the_dropped_ranks() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let base = Conv2dConfig::new([2, 4], [3, 3]).init(&device);
        let mut layer = adapter(&base, 3, &device);
        layer.svd.mask_singular_values(&[true, false, true]);
        layer.svd.kept = Some(vec![true, false, true]);
        let e: Vec<f32> = layer.svd.lora_e.val().into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
        assert_eq!(e[1], 0.0);
        assert!(e[0] != 0.0 && e[2] != 0.0);
        let shapes: Vec<(String, Vec<usize>)> = layer.export().into_iter().map(|(k, d)| (k, d.shape().to_vec())).collect();
        assert_eq!(shapes, vec![("lora_A".into(), vec![2, 18]), ("lora_B".into(), vec![4, 2]), ("lora_E".into(), vec![2, 1])]);
    }
}
