//! (IA)³ on a 2-D convolution.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use peft_core::{Conv2dAdapter, Result};

use crate::linear::UNMERGE_EPS;

/// (IA)³ on a `Conv2d`: one learned factor per channel.
///
/// - attention-style layer: `h = conv(x) * l`, `l` per output channel (the bias is scaled too);
/// - feed-forward layer: `h = conv(x * l)`, `l` per input channel.
///
/// The file holds `ia3_l` as `[1, channels, 1, 1]`, as the Python library does.
#[derive(Module, Debug)]
pub struct Ia3Conv2d {
    /// The vector `l`: `[c_out]`, or `[c_in]` when `feedforward`.
    pub ia3_l: Param<Tensor<1>>,
    /// Whether the input (feed-forward layers) rather than the output is scaled.
    pub feedforward: bool,
    /// The base convolution's groups (a feed-forward merge spreads `l` over each group's kernels).
    pub groups: usize,
}

impl Ia3Conv2d {
    /// An adapter with vector `l` on a convolution of `groups` groups.
    pub fn new(l: Tensor<1>, feedforward: bool, groups: usize) -> Self {
        Ia3Conv2d { ia3_l: Param::from_tensor(l), feedforward, groups }
    }

    /// From the file's `ia3_l` `[1, channels, 1, 1]` (shape already checked).
    pub fn from_torch(l: TensorData, feedforward: bool, groups: usize, device: &Device) -> Self {
        let len = l.num_elements();
        Self::new(Tensor::<4>::from_data(l, device).reshape([len]), feedforward, groups)
    }

    /// `l` as `[1, channels, 1, 1]`, to broadcast over `[batch, channels, height, width]`.
    fn per_channel(&self) -> Tensor<4> {
        let n = self.ia3_l.shape().dims::<1>()[0];
        self.ia3_l.val().reshape([1, n, 1, 1])
    }

    /// The factor of the kernel `[c_out, c_in / groups, kh, kw]`: `l` along the output channels,
    /// or (feed-forward) along each output channel's own input channels.
    fn kernel_factor(&self) -> Tensor<4> {
        let l = self.ia3_l.val();
        let n = l.dims()[0];
        if !self.feedforward {
            return l.reshape([n, 1, 1, 1]);
        }
        if self.groups <= 1 {
            return l.reshape([1, n, 1, 1]);
        }
        // Output channel `o` of group `g` reads input channels `g * per_group ..`: each group's
        // factors, `[groups, 1, per_group, 1]`, are repeated over its output channels in `scale_kernel`.
        let per_group = n / self.groups;
        l.reshape([self.groups, 1, per_group, 1])
    }

    fn scale_kernel(&self, weight: Tensor<4>, divide: bool) -> Tensor<4> {
        let mut factor = self.kernel_factor();
        if self.feedforward && self.groups > 1 {
            let [c_out, per_group, kh, kw] = weight.dims();
            let out_per_group = c_out / self.groups;
            factor = factor
                .expand([self.groups, out_per_group, per_group, 1])
                .reshape([c_out, per_group, 1, 1])
                .expand([c_out, per_group, kh, kw]);
        }
        if divide { weight / factor.add_scalar(UNMERGE_EPS) } else { weight * factor }
    }
}

impl Conv2dAdapter for Ia3Conv2d {
    /// `x * l` per input channel on a feed-forward layer, else `x`.
    ///
    /// # Shapes
    /// - `x`: `[batch, c_in, height, width]`, and the same out
    fn adapt_input(&self, x: Tensor<4>) -> Tensor<4> {
        if self.feedforward { x * self.per_channel() } else { x }
    }

    /// `y * l` per output channel (bias included) unless the layer is feed-forward.
    ///
    /// # Shapes
    /// - `y`: `[batch, c_out, height, width]`, and the same out
    fn adapt_output(&self, _x: &Tensor<4>, y: Tensor<4>) -> Tensor<4> {
        if self.feedforward { y } else { y * self.per_channel() }
    }

    fn merge(&self, weight: Tensor<4>) -> Result<Tensor<4>> {
        Ok(self.scale_kernel(weight, false))
    }

    fn unmerge(&self, weight: Tensor<4>) -> Result<Tensor<4>> {
        Ok(self.scale_kernel(weight, true))
    }

    fn merge_bias(&self, bias: Tensor<1>) -> Result<Tensor<1>> {
        Ok(if self.feedforward { bias } else { bias * self.ia3_l.val() })
    }

    fn unmerge_bias(&self, bias: Tensor<1>) -> Result<Tensor<1>> {
        Ok(if self.feedforward { bias } else { bias / self.ia3_l.val().add_scalar(UNMERGE_EPS) })
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        vec![("ia3_l".into(), self.per_channel().into_data())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, Tolerance};

    /// Merging equals the adapted forward, for both kinds and with groups.
    #[test]
    fn merged_kernels_give_the_adapted_output() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        for (feedforward, groups) in [(false, 1), (true, 1), (true, 2), (false, 2)] {
            let conv = Conv2dConfig::new([4, 6], [3, 3]).with_groups(groups).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(&device);
            let n = if feedforward { 4 } else { 6 };
            let adapter = Ia3Conv2d::new(Tensor::random([n], Distribution::Uniform(0.5, 1.5), &device), feedforward, groups);
            let x = Tensor::<4>::random([2, 4, 5, 5], Distribution::Default, &device);
            let adapted = adapter.adapt_output(&x, conv.forward(adapter.adapt_input(x.clone())));
            let mut merged = conv.clone();
            merged.weight = Param::from_tensor(adapter.merge(conv.weight.val()).expect("merges"));
            merged.bias = conv.bias.as_ref().map(|b| Param::from_tensor(adapter.merge_bias(b.val()).expect("merges")));
            merged.forward(x).into_data().assert_approx_eq::<f32>(&adapted.into_data(), Tolerance::default());
            let back = adapter.unmerge(merged.weight.val()).expect("unmerges");
            back.into_data().assert_approx_eq::<f32>(&conv.weight.val().into_data(), Tolerance::default());
        }
    }
}
