//! `AdaptedLinear`: a linear layer that adapters attach to.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::fmt::Debug;

use super::mixed::select_rows;
use super::packed::PackedBase;
use super::precision::to_adapter_dtype;
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

    /// [`adapt_output`](Self::adapt_output) for adapters that also read the base layer (DoRA
    /// normalises by the column norms of `W0 + s A B`). The layer calls this one; by default it
    /// forwards to `adapt_output`.
    ///
    /// # Shapes
    /// As `adapt_output`.
    fn adapt_output_with_base(&self, base: &Linear, x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        let _ = base;
        self.adapt_output(x, y)
    }

    /// Whether [`adapt_output_with_base`](Self::adapt_output_with_base) reads the base layer's
    /// weight (DoRA). Over a packed (quantized) base, the layer dequantizes a float copy for the
    /// call only when an active adapter says so; others get the layer with its placeholder weight.
    fn reads_base_weight(&self) -> bool {
        false
    }

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
    /// The base weight kept block-quantized (QLoRA; see [`super::packed`]). While set,
    /// `base_layer.weight` is a placeholder of the right shape that holds no memory (a broadcast
    /// zero) and every reader of the base weight goes through [`AdaptedLinear::base_weight`].
    #[module(skip)]
    pub packed: Option<PackedBase>,
}

impl AdaptedLinear {
    /// A new layer with Burn's default initialisation and no adapter.
    pub fn new(d_input: usize, d_output: usize, bias: bool, device: &Device) -> Self {
        Self::from_linear(LinearConfig::new(d_input, d_output).with_bias(bias).init(device))
    }

    /// Wraps an existing Burn linear layer.
    pub fn from_linear(base_layer: Linear) -> Self {
        AdaptedLinear { base_layer, adapters: AdapterSet::default(), fan_in_fan_out: false, packed: None }
    }

    /// A layer whose frozen weight stays in `packed` blocks (QLoRA): dequantized inside each
    /// forward and backward, never held whole. `bias` is `[d_output]`.
    pub fn from_packed(packed: PackedBase, bias: Option<Tensor<1>>, device: &Device) -> Self {
        let [d_input, d_output] = packed.dims();
        let base_layer = Linear {
            weight: burn::module::Param::from_tensor(placeholder([d_input, d_output], device)).set_require_grad(false),
            bias: bias.map(|b| burn::module::Param::from_tensor(b).set_require_grad(false)),
        };
        AdaptedLinear { base_layer, adapters: AdapterSet::default(), fan_in_fan_out: false, packed: Some(packed) }
    }

    /// Keeps this layer's base weight as `packed` blocks from now on (its parameter keeps its id
    /// and is not initialised if it was still lazy). Meant for loaders, before adapters attach.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] when the blocks' `[d_input, d_output]` differ from the layer's.
    pub fn set_packed(&mut self, packed: PackedBase) -> Result<()> {
        let (dims, expected) = (packed.dims(), self.dims());
        if dims != expected {
            return Err(crate::Error::ShapeMismatch {
                path: "packed base weight".into(),
                tensor: "weight".into(),
                expected: expected.to_vec(),
                actual: dims.to_vec(),
            });
        }
        let device = self.base_layer.weight.lazy_device();
        let id = self.base_layer.weight.id;
        self.base_layer.weight = burn::module::Param::initialized(id, placeholder(dims, &device).set_require_grad(false));
        self.packed = Some(packed);
        Ok(())
    }

    /// The base weight `[d_input, d_output]` in its float type: dequantized to f32 when it is kept
    /// packed (a copy made for this call).
    pub fn base_weight(&self) -> Tensor<2> {
        match &self.packed {
            Some(packed) => packed.dequantized(&self.base_layer.weight.lazy_device()),
            None => self.base_layer.weight.val(),
        }
    }

    /// The base layer as `adapters` see it: itself, or for a packed layer that one of them reads
    /// (DoRA's column norms), a float copy made for the call.
    fn base_for<'a>(&'a self, adapters: &[&dyn LinearAdapter]) -> std::borrow::Cow<'a, Linear> {
        match &self.packed {
            Some(_) if adapters.iter().any(|a| a.reads_base_weight()) => std::borrow::Cow::Owned(Linear {
                weight: burn::module::Param::from_tensor(self.base_weight()),
                bias: self.base_layer.bias.clone(),
            }),
            _ => std::borrow::Cow::Borrowed(&self.base_layer),
        }
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

    /// The base layer and every active adapter; in a mixed-adapter batch (rows set on the
    /// adapter set), each row's own adapter.
    ///
    /// # Shapes
    /// - `input`: `[..., d_input]`
    /// - output: `[..., d_output]`
    ///
    /// # Panics
    /// When the input's last dimension is not `d_input`, with a message naming both widths (a
    /// wiring mistake in the model; Burn would otherwise fail deep inside its matmul).
    #[track_caller]
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let dims = input.dims();
        let [d_input, d_output] = self.dims();
        let width = dims.last().copied().unwrap_or(0);
        if width != d_input {
            panic!(
                "AdaptedLinear::forward: the input's last dimension is {width} but this layer takes {d_input} \
                 features (it maps {d_input} -> {d_output}); input shape {dims:?}"
            );
        }
        if self.adapters.is_empty() || self.adapters.is_disabled() {
            return self.base_forward(input);
        }
        let dtype = input.dtype();
        // Adapters see `[batch, tokens, features]`: the batch axis stays first for mixed batches.
        // They compute in f32 whatever the input's and the base's float types.
        let batch = if D >= 2 { dims[0] } else { 1 };
        let tokens = dims.iter().product::<usize>() / d_input.max(1) / batch.max(1);
        let x = to_adapter_dtype(input.reshape([batch, tokens, d_input]));
        let y = match self.adapters.rows() {
            Some(rows) => match rows.for_batch(batch) {
                Some(rows) => self.forward_mixed(x, rows),
                // Recorded in the shared batch for the caller to report; the base output stands.
                None => self.base_forward(x),
            },
            None => self.forward_active(x),
        };
        let mut out_dims = dims;
        out_dims[D - 1] = d_output;
        y.cast(dtype).reshape(out_dims)
    }

    /// The base layer alone, computed in its weight's float type and returned in `x`'s (the same
    /// tensor operations as `Linear::forward` when the types agree).
    fn base_forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let Some(packed) = &self.packed {
            return self.packed_forward(packed, x);
        }
        let dtype = x.dtype();
        let weight_dtype = self.base_layer.weight.val().dtype();
        if dtype == weight_dtype {
            return self.base_layer.forward(x);
        }
        self.base_layer.forward(x.cast(weight_dtype)).cast(dtype)
    }

    /// `x W + b` with `W` dequantized inside the operation, in f32, returned in `x`'s type.
    fn packed_forward<const D: usize>(&self, packed: &PackedBase, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let mut dims = x.dims();
        let [d_input, d_output] = packed.dims();
        let rows = dims.iter().product::<usize>() / d_input.max(1);
        let mut y = packed.matmul(to_adapter_dtype(x).reshape([rows, d_input]));
        if let Some(bias) = &self.base_layer.bias {
            y = y + to_adapter_dtype(bias.val()).unsqueeze_dim(0);
        }
        dims[D - 1] = d_output;
        y.reshape(dims).cast(dtype)
    }

    fn forward_active(&self, x: Tensor<3>) -> Tensor<3> {
        let adapters: Vec<&dyn LinearAdapter> = self.adapters.forward_adapters().collect();
        let base_input = adapters.iter().fold(x.clone(), |x, a| a.adapt_input(x));
        let y = self.base_forward(base_input);
        let base = self.base_for(&adapters);
        adapters.iter().fold(y, |y, a| a.adapt_output_with_base(&base, &x, y))
    }

    /// One adapter per row (`rows[i]` indexes the set; `None` is the base alone).
    ///
    /// Low-rank adapters: the rows' `A` and `B` are gathered and applied as one batched product,
    /// whatever the number of distinct adapters (the BGMV idea of Punica / S-LoRA). Adapters
    /// without that form (`modules_to_save` copies, input scalings) run their own forward on the
    /// batch and keep their rows. Merged adapters cannot occur here: rows are refused while one
    /// is merged (see [`AdapterSet::set_rows`]).
    fn forward_mixed(&self, x: Tensor<3>, rows: &[Option<usize>]) -> Tensor<3> {
        let mut used: Vec<usize> = rows.iter().flatten().copied().collect();
        used.sort_unstable();
        used.dedup();
        let mut low_rank: Vec<(usize, LowRank)> = Vec::new();
        let mut full: Vec<usize> = Vec::new();
        for index in used {
            match self.adapters.at(index).and_then(|(_, a)| a.low_rank()) {
                Some(f) => low_rank.push((index, f)),
                None => full.push(index),
            }
        }
        let mut y = self.base_forward(x.clone());
        if !low_rank.is_empty() {
            let slots: Vec<i64> = rows
                .iter()
                .map(|r| r.and_then(|i| low_rank.iter().position(|(j, _)| *j == i)).map_or(0, |k| k as i64 + 1))
                .collect();
            y = y + gathered_low_rank(&x, &low_rank, slots, self.dims());
        }
        if !full.is_empty() {
            let full_rows: Vec<Option<usize>> = rows.iter().map(|r| r.filter(|i| full.contains(i))).collect();
            y = select_rows(y, &full_rows, |i, _| match self.adapters.at(i) {
                // The adapter's whole forward, as if it were the only active one.
                Some((_, a)) => a.adapt_output_with_base(&self.base_for(&[a]), &x, self.base_forward(a.adapt_input(x.clone()))),
                None => self.base_forward(x.clone()),
            });
        }
        y
    }
}

/// A tensor of shape `dims` that holds no memory: a broadcast (stride-0) zero. It stands in for
/// a packed layer's weight, so ids, parameter counts and file layouts see the real shape.
fn placeholder(dims: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::<2>::zeros([1, 1], device).expand(dims)
}

/// `x_i A_{slot_i} (s B_{slot_i})` per row `i`: slot 0 is "no update" (zero factors), slot `k + 1`
/// is `factors[k]`, each padded with zeros to the largest rank.
///
/// # Shapes
/// - `x`: `[batch, tokens, d_input]`, `slots`: one per row; output `[batch, tokens, d_output]`
fn gathered_low_rank(x: &Tensor<3>, factors: &[(usize, LowRank)], slots: Vec<i64>, dims: [usize; 2]) -> Tensor<3> {
    let [d_input, d_output] = dims;
    let device = x.device();
    let batch = slots.len();
    let r_max = factors.iter().map(|(_, f)| f.a.dims()[1]).max().unwrap_or(0).max(1);
    let mut a_stack = vec![Tensor::<2>::zeros([d_input, r_max], &device)];
    let mut b_stack = vec![Tensor::<2>::zeros([r_max, d_output], &device)];
    for (_, f) in factors {
        a_stack.push(pad_cols(f.a.clone(), r_max));
        b_stack.push(pad_rows(f.b.clone().mul_scalar(f.scaling), r_max));
    }
    let index = Tensor::<1, Int>::from_data(TensorData::new(slots, [batch]), &device);
    let a_rows = Tensor::stack::<3>(a_stack, 0).select(0, index.clone());
    let b_rows = Tensor::stack::<3>(b_stack, 0).select(0, index);
    x.clone().matmul(a_rows).matmul(b_rows)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapted::{MixedBatch, SavedLinear};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32")
    }

    #[test]
    #[should_panic(expected = "the input's last dimension is 5 but this layer takes 4 features (it maps 4 -> 3)")]
    fn a_wrong_input_width_panics_naming_both_widths() {
        let layer = AdaptedLinear::new(4, 3, true, &crate::backend::default_device().expect("PEFT_DEVICE names a backend compiled in"));
        let _ = layer.forward(Tensor::<2>::zeros([2, 5], &crate::backend::default_device().expect("PEFT_DEVICE names a backend compiled in")));
    }

    /// A layer with a `modules_to_save` copy (no low-rank form) named `copy`.
    fn with_copy(device: &Device) -> AdaptedLinear {
        let mut layer = AdaptedLinear::new(4, 3, true, device);
        let copy = LinearConfig::new(4, 3).init(device);
        layer.adapters.insert("copy", crate::adapted::Erased::new(SavedLinear { copy })).expect("inserts");
        layer
    }

    #[test]
    fn adapters_without_a_low_rank_form_act_per_row() {
        let device = crate::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let mut layer = with_copy(&device);
        let x = Tensor::<3>::random([3, 2, 4], burn::tensor::Distribution::Default, &device);
        let copied = values(layer.forward(x.clone()));
        layer.adapters.set_disabled(true);
        let base = values(layer.forward(x.clone()));
        layer.adapters.set_disabled(false);
        let batch = MixedBatch::new(&["copy", crate::BASE_ONLY, "copy"]);
        layer.adapters.set_rows(Some(&batch), "layer").expect("sets");
        let mixed = values(layer.forward(x));
        let per_row = 2 * 3;
        assert_eq!(&mixed[..per_row], &copied[..per_row], "row 0: the copy");
        assert_eq!(&mixed[per_row..2 * per_row], &base[per_row..2 * per_row], "row 1: the base layer");
        assert_eq!(&mixed[2 * per_row..], &copied[2 * per_row..], "row 2: the copy");
        assert!(copied[..per_row] != base[..per_row], "the copy differs from the base");
        assert_eq!(batch.mismatch(), None);
    }

    #[test]
    fn another_batch_size_is_recorded_for_the_caller() {
        let device = crate::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let mut layer = with_copy(&device);
        let batch = MixedBatch::new(&["copy", "copy"]);
        layer.adapters.set_rows(Some(&batch), "layer").expect("sets");
        let _ = layer.forward(Tensor::<3>::zeros([3, 1, 4], &device));
        assert_eq!(batch.mismatch(), Some(3));
        assert!(matches!(batch.check(), Err(crate::Error::BatchAdaptersMismatch { names: 2, batch: 3 })));
    }

    #[test]
    fn rows_and_merges_exclude_each_other() {
        let device = crate::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let mut layer = with_copy(&device);
        let batch = MixedBatch::new(&["copy"]);
        layer.adapters.set_rows(Some(&batch), "layer").expect("sets");
        assert!(matches!(layer.merge_adapter("copy"), Err(crate::Error::InvalidState(_))));
        layer.adapters.set_rows(None, "layer").expect("clears");
        layer.merge_adapter("copy").expect("merges");
        let err = layer.adapters.set_rows(Some(&batch), "layer").expect_err("merged");
        assert!(matches!(&err, crate::Error::MergedAdaptersInMixedBatch { path, merged } if path == "layer" && merged == &["copy"]));
        assert!(layer.adapters.rows().is_none(), "nothing set");
    }
}
