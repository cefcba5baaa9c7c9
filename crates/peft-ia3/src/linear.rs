//! (IA)³ on a linear layer (transformers' `nn.Linear` and GPT-2's `Conv1D` alike).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use peft_core::{LinearAdapter, Result};

/// The tolerance the Python library adds to the vector before dividing by it when unmerging.
pub(crate) const UNMERGE_EPS: f64 = 1e-8;

/// (IA)³ on a linear layer: one learned factor per feature.
///
/// - attention-style layer: `h = (x W + b) * l`, `l` of length `d_output` (the bias is scaled too);
/// - feed-forward layer: `h = (x * l) W + b`, `l` of length `d_input`.
///
/// The file holds `ia3_l` as the Python library shapes it: `[d_output, 1]`, or `[1, d_input]` on
/// a feed-forward layer, whatever the base layer's weight layout (`fan_in_fan_out` changes how the
/// Python library multiplies the weight when merging, not the vector).
#[derive(Module, Debug)]
pub struct Ia3Linear {
    /// The vector `l`: `[d_output]`, or `[d_input]` when `feedforward`.
    pub ia3_l: Param<Tensor<1>>,
    /// Whether the input (feed-forward layers) rather than the output is scaled.
    pub feedforward: bool,
}

impl Ia3Linear {
    /// An adapter with vector `l` (`[d_output]`, or `[d_input]` when `feedforward`).
    pub fn new(l: Tensor<1>, feedforward: bool) -> Self {
        Ia3Linear { ia3_l: Param::from_tensor(l), feedforward }
    }

    /// From the file's `ia3_l` (`[d_output, 1]` or `[1, d_input]`, shape already checked).
    pub fn from_torch(l: TensorData, feedforward: bool, device: &Device) -> Self {
        let len = l.num_elements();
        Self::new(Tensor::<2>::from_data(l, device).reshape([len]), feedforward)
    }

    /// The file's shape of `ia3_l` for a layer `[d_input, d_output]`.
    pub fn torch_shape(dims: [usize; 2], feedforward: bool) -> [usize; 2] {
        let [d_input, d_output] = dims;
        if feedforward { [1, d_input] } else { [d_output, 1] }
    }

    /// The vector as a column `[d_input, 1]` (feed-forward) or a row `[1, d_output]`: the factor
    /// of the base weight `[d_input, d_output]`.
    fn weight_factor(&self) -> Tensor<2> {
        let l = self.ia3_l.val();
        if self.feedforward { l.unsqueeze_dim::<2>(1) } else { l.unsqueeze::<2>() }
    }
}

impl LinearAdapter for Ia3Linear {
    /// `x * l` on a feed-forward layer, else `x`.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, d_input]`, and the same out
    fn adapt_input(&self, x: Tensor<3>) -> Tensor<3> {
        if self.feedforward { x * self.ia3_l.val().unsqueeze::<3>() } else { x }
    }

    /// `y * l` (bias included, as in the Python library) unless the layer is feed-forward.
    ///
    /// # Shapes
    /// - `y`: `[batch, tokens, d_output]`, and the same out
    fn adapt_output(&self, _x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        if self.feedforward { y } else { y * self.ia3_l.val().unsqueeze::<3>() }
    }

    /// `W * l` along the scaled axis; the bias is scaled too unless the layer is feed-forward.
    fn merge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        let bias = if self.feedforward { bias } else { bias.map(|b| b * self.ia3_l.val()) };
        Ok((weight * self.weight_factor(), bias))
    }

    /// `W / (l + 1e-8)` (and the bias likewise), the Python library's inexact inverse.
    fn unmerge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        let bias = if self.feedforward { bias } else { bias.map(|b| b / self.ia3_l.val().add_scalar(UNMERGE_EPS)) };
        Ok((weight / self.weight_factor().add_scalar(UNMERGE_EPS), bias))
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        let len = self.ia3_l.shape().dims::<1>()[0];
        let shape = if self.feedforward { [1, len] } else { [len, 1] };
        vec![("ia3_l".into(), self.ia3_l.val().reshape(shape).into_data())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};
    use peft_core::AdaptedLinear;

    fn layer(feedforward: bool, device: &Device) -> (AdaptedLinear, Tensor<3>) {
        let mut layer = AdaptedLinear::new(4, 3, true, device);
        let n = if feedforward { 4 } else { 3 };
        let l = Tensor::<1>::random([n], Distribution::Uniform(0.5, 1.5), device);
        layer.adapters.insert("default", peft_core::adapted::Erased::new(Ia3Linear::new(l, feedforward))).expect("inserts");
        let x = Tensor::<3>::random([2, 5, 4], Distribution::Default, device);
        (layer, x)
    }

    #[test]
    fn merging_gives_the_adapted_output_and_unmerging_the_base() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        for feedforward in [false, true] {
            let (mut layer, x) = layer(feedforward, &device);
            let adapted = layer.forward(x.clone());
            layer.adapters.set_disabled(true);
            let base = layer.forward(x.clone());
            layer.adapters.set_disabled(false);
            layer.merge_adapter("default").expect("merges");
            let merged = layer.base_layer.forward(x.clone());
            merged.into_data().assert_approx_eq::<f32>(&adapted.into_data(), Tolerance::default());
            layer.unmerge_adapter("default").expect("unmerges");
            layer.base_layer.forward(x).into_data().assert_approx_eq::<f32>(&base.into_data(), Tolerance::default());
        }
    }

    #[test]
    fn ones_leave_the_layer_unchanged_and_export_python_s_shapes() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let layer = AdaptedLinear::new(4, 3, true, &device);
        let x = Tensor::<3>::random([2, 5, 4], Distribution::Default, &device);
        for (feedforward, shape) in [(false, [3, 1]), (true, [1, 4])] {
            let n = if feedforward { 4 } else { 3 };
            let adapter = Ia3Linear::new(Tensor::ones([n], &device), feedforward);
            let y = adapter.adapt_output(&x, layer.base_layer.forward(adapter.adapt_input(x.clone())));
            y.into_data().assert_eq(&layer.base_layer.forward(x.clone()).into_data(), true);
            let exported = adapter.export();
            assert_eq!(exported[0].0, "ia3_l");
            assert_eq!(exported[0].1.shape().to_vec(), shape.to_vec());
            assert_eq!(Ia3Linear::torch_shape([4, 3], feedforward), shape);
        }
    }
}
