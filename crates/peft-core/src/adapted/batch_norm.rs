//! `AdaptedBatchNorm2d`: inference-mode batch normalisation as an adapter site, so that
//! `modules_to_save` can copy it (with its running statistics) like the Python library does.

use burn::module::{Module, Param};
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use std::fmt::Debug;

use super::linear_merge::{replace, unknown};
use super::mixed::select_rows;
use super::saved::unmerge_error;
use super::set::AdapterSet;
use crate::{Error, Result};

/// Batch normalisation in inference mode, with PyTorch's names:
/// `y = (x - running_mean) / sqrt(running_var + eps) * weight + bias` per channel.
///
/// The running statistics are buffers, not parameters: plain tensors no visitor sees, so
/// optimizers leave them alone and parameter counts match the Python library's (which counts
/// parameters only); loaders fill them by hand. Training-mode statistics (from the batch) are not
/// implemented: the running ones are always used.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    /// Scale, `[channels]`.
    pub weight: Param<Tensor<1>>,
    /// Shift, `[channels]`.
    pub bias: Param<Tensor<1>>,
    /// Mean per channel, `[channels]`.
    pub running_mean: Tensor<1>,
    /// Variance per channel, `[channels]`.
    pub running_var: Tensor<1>,
    /// PyTorch's `num_batches_tracked` buffer, kept so that files round-trip.
    pub num_batches_tracked: i64,
    /// Added to the variance (PyTorch's default 1e-5).
    pub eps: f64,
}

impl BatchNorm2d {
    /// Identity statistics (mean 0, variance 1), scale 1, shift 0, as PyTorch initialises it.
    pub fn new(channels: usize, device: &Device) -> Self {
        BatchNorm2d {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: Tensor::zeros([channels], device),
            running_var: Tensor::ones([channels], device),
            num_batches_tracked: 0,
            eps: 1e-5,
        }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.weight.lazy_shape().dims::<1>()[0]
    }

    /// Normalises each channel with the running statistics.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, height, width]`, and the same out.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // The statistics are plain tensors (f32 even when the weights were cast to half
        // precision): scale and shift are formed in f32, then applied in the input's type.
        let dtype = x.dtype();
        let per_channel = |t: Tensor<1>| t.cast(dtype).unsqueeze_dims::<4>(&[0, 2, 3]);
        let (weight, bias) = (self.weight.val().cast(FloatDType::F32), self.bias.val().cast(FloatDType::F32));
        let scale = weight.div(self.running_var.clone().cast(FloatDType::F32).add_scalar(self.eps).sqrt());
        let shift = bias - self.running_mean.clone().cast(FloatDType::F32) * scale.clone();
        x * per_channel(scale) + per_channel(shift)
    }
}

/// An adapter on a batch norm layer (only `modules_to_save` copies so far).
pub trait BatchNormAdapter: super::erased::AdapterObject {
    /// Transforms the base output given the input.
    ///
    /// # Shapes
    /// - `x` and `y`: `[batch, channels, height, width]`
    fn adapt_output(&self, x: &Tensor<4>, y: Tensor<4>) -> Tensor<4>;

    /// The layer that replaces the base one when merging.
    fn merge(&self, base: &BatchNorm2d) -> Result<BatchNorm2d>;

    /// The base layer from a merged one.
    fn unmerge(&self, merged: &BatchNorm2d) -> Result<BatchNorm2d>;

    /// The adapter's tensors in the Python library's layout, keyed by suffix.
    fn export(&self) -> Vec<(String, TensorData)>;
}

super::erased::adapter_object!(BatchNormAdapter);

/// A batch norm layer with named adapters.
#[derive(Module, Debug)]
pub struct AdaptedBatchNorm2d {
    /// The frozen base layer.
    pub base_layer: BatchNorm2d,
    /// The adapters, by name.
    pub adapters: AdapterSet<dyn BatchNormAdapter>,
}

impl AdaptedBatchNorm2d {
    /// Wraps a batch norm layer.
    pub fn from_batch_norm(base_layer: BatchNorm2d) -> Self {
        AdaptedBatchNorm2d { base_layer, adapters: AdapterSet::default() }
    }

    /// The base layer and the active adapters.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, height, width]`, and the same out.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.base_layer.forward(x.clone());
        if self.adapters.is_empty() || self.adapters.is_disabled() {
            return y;
        }
        if let Some(rows) = self.adapters.rows() {
            // A batch of another size is recorded for the caller to report; the base output stands.
            let Some(rows) = rows.for_batch(y.dims()[0]) else { return y };
            let adapters: Vec<&dyn BatchNormAdapter> = self.adapters.iter().map(|(_, a)| a).collect();
            return select_rows(y, rows, |i, y| adapters[i].adapt_output(&x, y));
        }
        self.adapters.forward_adapters().fold(y, |y, a| a.adapt_output(&x, y))
    }

    /// Folds adapter `name` into the base layer.
    pub fn merge_adapter(&mut self, name: &str) -> Result<()> {
        self.adapters.check_no_rows(name)?;
        if self.adapters.merged().iter().any(|n| n == name) {
            return Ok(());
        }
        let adapter = self.adapters.get(name).ok_or_else(|| unknown(name, self.adapters.names()))?;
        let merged = adapter.merge(&self.base_layer)?;
        self.set_base(merged);
        self.adapters.mark_merged(name);
        Ok(())
    }

    /// Takes merged adapter `name` back out of the base layer.
    pub fn unmerge_adapter(&mut self, name: &str) -> Result<()> {
        if !self.adapters.merged().iter().any(|n| n == name) {
            return Err(Error::InvalidState(format!("adapter `{name}` is not merged, so it cannot be unmerged")));
        }
        let adapter = self.adapters.get(name).ok_or_else(|| unknown(name, self.adapters.names()))?;
        let base = adapter.unmerge(&self.base_layer)?;
        self.set_base(base);
        self.adapters.mark_unmerged(name);
        Ok(())
    }

    /// Takes `layer`'s values, keeping the base parameters' ids.
    fn set_base(&mut self, layer: BatchNorm2d) {
        let base = &mut self.base_layer;
        base.weight = replace(&base.weight, layer.weight.val());
        base.bias = replace(&base.bias, layer.bias.val());
        base.running_mean = layer.running_mean;
        base.running_var = layer.running_var;
        base.num_batches_tracked = layer.num_batches_tracked;
    }
}

/// A trainable copy of a batch norm layer (`modules_to_save`), running statistics included.
#[derive(Module, Debug)]
pub struct SavedBatchNorm2d {
    /// The copy, starting equal to the base layer.
    pub copy: BatchNorm2d,
}

impl BatchNormAdapter for SavedBatchNorm2d {

    /// The copy's output; the base output is discarded.
    fn adapt_output(&self, x: &Tensor<4>, _y: Tensor<4>) -> Tensor<4> {
        self.copy.forward(x.clone())
    }

    fn merge(&self, _base: &BatchNorm2d) -> Result<BatchNorm2d> {
        Ok(self.copy.clone())
    }

    fn unmerge(&self, _merged: &BatchNorm2d) -> Result<BatchNorm2d> {
        Err(unmerge_error())
    }

    /// `weight`, `bias`, `running_mean`, `running_var` and `num_batches_tracked` (int64, a
    /// scalar), as `state_dict()` holds them.
    fn export(&self) -> Vec<(String, TensorData)> {
        let c = &self.copy;
        vec![
            ("weight".into(), c.weight.val().into_data()),
            ("bias".into(), c.bias.val().into_data()),
            ("running_mean".into(), c.running_mean.clone().into_data()),
            ("running_var".into(), c.running_var.clone().into_data()),
            ("num_batches_tracked".into(), TensorData::new(vec![c.num_batches_tracked], [0usize; 0])),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_with_running_statistics() {
        let device = crate::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let mut norm = BatchNorm2d::new(2, &device);
        norm.weight = Param::from_tensor(Tensor::from_floats([2.0, 1.0], &device));
        norm.bias = Param::from_tensor(Tensor::from_floats([0.5, -1.0], &device));
        norm.running_mean = Tensor::from_floats([1.0, 0.0], &device);
        norm.running_var = Tensor::from_floats([3.0, 0.25], &device);
        norm.eps = 1.0;
        // Channel 0: (x - 1) / 2 * 2 + 0.5; channel 1: x / sqrt(1.25) - 1.
        let x = Tensor::<4>::from_floats([[[[3.0]], [[2.0]]]], &device);
        let y: Vec<f32> = norm.forward(x).into_data().try_to_vec::<f32>().expect("f32");
        assert!((y[0] - 2.5).abs() < 1e-6, "{}", y[0]);
        assert!((y[1] - (2.0 / 1.25f32.sqrt() - 1.0)).abs() < 1e-6, "{}", y[1]);
    }

    #[test]
    fn a_saved_copy_replaces_the_output_and_merges_in() {
        let device = crate::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let mut site = AdaptedBatchNorm2d::from_batch_norm(BatchNorm2d::new(1, &device));
        let mut copy = BatchNorm2d::new(1, &device);
        copy.running_mean = Tensor::from_floats([1.0], &device);
        copy.num_batches_tracked = 7;
        site.adapters.insert("default", crate::adapted::Erased::new(SavedBatchNorm2d { copy })).expect("inserts");
        let x = Tensor::<4>::from_floats([[[[3.0]]]], &device);
        let adapted: Vec<f32> = site.forward(x.clone()).into_data().try_to_vec::<f32>().expect("f32");
        site.merge_adapter("default").expect("merges");
        assert_eq!(site.base_layer.num_batches_tracked, 7);
        site.adapters.set_disabled(true);
        let merged: Vec<f32> = site.forward(x).into_data().try_to_vec::<f32>().expect("f32");
        assert!((adapted[0] - merged[0]).abs() < 1e-6 && (adapted[0] - 2.0 / (1.0f32 + 1e-5).sqrt()).abs() < 1e-5);
        assert!(site.unmerge_adapter("default").is_err(), "a merged copy cannot be taken out");
    }
}
