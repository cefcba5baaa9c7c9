//! `AdaptedLinear`: a linear layer that adapters attach to.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::fmt::Debug;

use super::set::AdapterSet;
use crate::Result;

/// A low-rank update `s * x A B`, as LoRA-family adapters can express it.
///
/// Mixed-adapter batches stack these per row and run one batched product per layer.
#[derive(Clone, Debug)]
pub struct LowRank {
    /// `A`, shape `[d_input, r]`.
    pub a: Tensor<2>,
    /// `B`, shape `[r, d_output]`.
    pub b: Tensor<2>,
    /// The scaling `s`.
    pub scaling: f64,
}

/// An adapter on a linear layer: the hooks a method implements.
///
/// The layer computes `y = W0 adapt_input(x) + b`, then passes `y` through `adapt_output` of each
/// active adapter in turn.
pub trait LinearAdapter: super::erased::AdapterObject {

    /// Transforms the input the base layer sees (IA3 on feed-forward layers). Identity by default.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, d_input]`, and the same out.
    fn adapt_input(&self, x: Tensor<3>) -> Tensor<3> {
        x
    }

    /// Transforms the base output given the (unadapted) input (LoRA adds `s * x A B`).
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, d_input]`
    /// - `y`: `[batch, tokens, d_output]`, and the same out.
    fn adapt_output(&self, x: &Tensor<3>, y: Tensor<3>) -> Tensor<3>;

    /// The update as low-rank factors, for adapters that have that form (mixed-adapter batches).
    fn low_rank(&self) -> Option<LowRank> {
        None
    }

    /// Folds the adapter into the base weight `[d_input, d_output]` and bias.
    fn merge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)>;

    /// Takes a merged adapter back out of the base weight and bias.
    fn unmerge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)>;

    /// The adapter's tensors in the Python library's layout, keyed by their suffix after the
    /// module path (`lora_A.weight`, ...).
    fn export(&self) -> Vec<(String, TensorData)>;
}

super::erased::adapter_object!(LinearAdapter);

/// A linear layer `y = x W + b` with named adapters.
///
/// The base weight is Burn's `[d_input, d_output]`; `fan_in_fan_out` records how the checkpoint
/// stores it (`true` for GPT-2's `Conv1D`, `[d_input, d_output]`; `false` for `nn.Linear`,
/// `[d_output, d_input]`), so files are read and written in their own layout.
#[derive(Module, Debug)]
pub struct AdaptedLinear {
    /// The frozen base layer (`base_layer`, as the Python library names it).
    pub base_layer: Linear,
    /// The adapters, by name.
    pub adapters: AdapterSet<dyn LinearAdapter>,
    /// Whether checkpoints store the weight `[d_input, d_output]`.
    pub fan_in_fan_out: bool,
}

impl AdaptedLinear {
    /// A new layer with Burn's default initialisation and no adapter.
    pub fn new(d_input: usize, d_output: usize, bias: bool, device: &Device) -> Self {
        Self::from_linear(LinearConfig::new(d_input, d_output).with_bias(bias).init(device))
    }

    /// Wraps an existing Burn linear layer.
    pub fn from_linear(base_layer: Linear) -> Self {
        AdaptedLinear { base_layer, adapters: AdapterSet::default(), fan_in_fan_out: false }
    }

    /// Marks the checkpoint layout as `[d_input, d_output]` (GPT-2's `Conv1D`).
    pub fn with_fan_in_fan_out(mut self, yes: bool) -> Self {
        self.fan_in_fan_out = yes;
        self
    }

    /// `[d_input, d_output]`.
    pub fn dims(&self) -> [usize; 2] {
        self.base_layer.weight.lazy_shape().dims()
    }

    /// The base layer and every active adapter.
    ///
    /// # Shapes
    /// - `input`: `[..., d_input]`
    /// - output: `[..., d_output]`
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        if self.adapters.is_empty() || self.adapters.is_disabled() {
            return self.base_layer.forward(input);
        }
        let dims = input.dims();
        let [d_input, d_output] = self.dims();
        // Adapters see `[batch, tokens, features]`: the batch axis stays first for mixed batches.
        let batch = if D >= 2 { dims[0] } else { 1 };
        let tokens = dims.iter().product::<usize>() / d_input.max(1) / batch.max(1);
        let x = input.reshape([batch, tokens, d_input]);
        let y = match self.adapters.rows() {
            Some(_) => self.forward_mixed(x),
            None => self.forward_active(x),
        };
        let mut out_dims = dims;
        out_dims[D - 1] = d_output;
        y.reshape(out_dims)
    }

    fn forward_active(&self, x: Tensor<3>) -> Tensor<3> {
        let adapters: Vec<&dyn LinearAdapter> = self.adapters.forward_adapters().collect();
        let base_input = adapters.iter().fold(x.clone(), |x, a| a.adapt_input(x));
        let y = self.base_layer.forward(base_input);
        adapters.iter().fold(y, |y, a| a.adapt_output(&x, y))
    }

    /// One adapter per row: the rows' `A` and `B` are gathered and applied as one batched
    /// product, whatever the number of distinct adapters (the BGMV idea of Punica / S-LoRA).
    fn forward_mixed(&self, x: Tensor<3>) -> Tensor<3> {
        let y = self.base_layer.forward(x.clone());
        let Some(rows) = self.adapters.rows() else { return y };
        let [batch, _, d_input] = x.dims();
        let d_output = self.dims()[1];
        let device = x.device();
        let factors: Vec<Option<LowRank>> = self
            .adapters
            .iter()
            .map(|(name, a)| if self.adapters.merged().iter().any(|m| m == name) { None } else { a.low_rank() })
            .collect();
        let r_max = factors.iter().flatten().map(|f| f.a.dims()[1]).max().unwrap_or(0);
        if r_max == 0 || rows.len() != batch {
            return y;
        }
        // Slot 0 is "base only": zero factors. Others are padded to the largest rank with zeros.
        let mut a_stack = vec![Tensor::<2>::zeros([d_input, r_max], &device)];
        let mut b_stack = vec![Tensor::<2>::zeros([r_max, d_output], &device)];
        for f in &factors {
            let (a, b) = match f {
                Some(f) => (pad_cols(f.a.clone(), r_max), pad_rows(f.b.clone().mul_scalar(f.scaling), r_max)),
                None => (Tensor::zeros([d_input, r_max], &device), Tensor::zeros([r_max, d_output], &device)),
            };
            a_stack.push(a);
            b_stack.push(b);
        }
        let slots: Vec<i64> = rows.iter().map(|r| r.map_or(0, |i| i as i64 + 1)).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(slots, [batch]), &device);
        let a_rows = Tensor::stack::<3>(a_stack, 0).select(0, index.clone());
        let b_rows = Tensor::stack::<3>(b_stack, 0).select(0, index);
        y + x.matmul(a_rows).matmul(b_rows)
    }
}

fn pad_cols(t: Tensor<2>, to: usize) -> Tensor<2> {
    let [rows, cols] = t.dims();
    if cols == to {
        return t;
    }
    let device = t.device();
    Tensor::cat(vec![t, Tensor::zeros([rows, to - cols], &device)], 1)
}

fn pad_rows(t: Tensor<2>, to: usize) -> Tensor<2> {
    let [rows, cols] = t.dims();
    if rows == to {
        return t;
    }
    let device = t.device();
    Tensor::cat(vec![t, Tensor::zeros([to - rows, cols], &device)], 0)
}
