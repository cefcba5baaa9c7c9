//! What every AdaLoRA layer shares: the factors `A`, `E`, `B` in the Python library's
//! orientation, the allocator's state, and the site lookup the allocator, the orthogonality
//! penalty and the gradient copy go through, whatever the base layer (linear or convolution).

use burn::module::{Param, ParamId};
use burn::tensor::{Bool, Tensor, TensorData};
use peft_core::{AdapterSites, SiteMut};

use super::allocator::Importance;
use super::{AdaLoraConv2d, AdaLoraLinear};

/// An AdaLoRA layer as the rank allocator sees it: `A: [r, d_input]`, `E: [r, 1]`,
/// `B: [d_output, r]`, whatever the base layer flattens into `d_input`.
pub(crate) trait SvdLayer {
    /// `A`, `E` and `B`, in that order.
    fn factors(&self) -> [&Param<Tensor<2>>; 3];

    /// Zeroes the singular values whose flag in `keep` is false.
    fn mask_singular_values(&mut self, keep: &[bool]);

    /// The ranks kept for export.
    fn kept_mut(&mut self) -> &mut Option<Vec<bool>>;

    /// The allocator's moving averages of this layer.
    fn importance_mut(&mut self) -> &mut Option<Importance>;

    /// The number of ranks the layer holds (rows of `A`).
    fn rank(&self) -> usize {
        self.factors()[0].shape().dims::<2>()[0]
    }
}

impl SvdLayer for AdaLoraLinear {
    fn factors(&self) -> [&Param<Tensor<2>>; 3] {
        [&self.lora_a, &self.lora_e, &self.lora_b]
    }

    fn mask_singular_values(&mut self, keep: &[bool]) {
        AdaLoraLinear::mask_singular_values(self, keep)
    }

    fn kept_mut(&mut self) -> &mut Option<Vec<bool>> {
        &mut self.kept
    }

    fn importance_mut(&mut self) -> &mut Option<Importance> {
        &mut self.importance
    }
}

/// A convolution's factors are a linear layer's over the flattened kernel.
impl SvdLayer for AdaLoraConv2d {
    fn factors(&self) -> [&Param<Tensor<2>>; 3] {
        self.svd.factors()
    }

    fn mask_singular_values(&mut self, keep: &[bool]) {
        self.svd.mask_singular_values(keep)
    }

    fn kept_mut(&mut self) -> &mut Option<Vec<bool>> {
        self.svd.kept_mut()
    }

    fn importance_mut(&mut self) -> &mut Option<Importance> {
        self.svd.importance_mut()
    }
}

/// Adapter `name`'s AdaLoRA layer at `site`: linear sites hold an [`AdaLoraLinear`], 2-D
/// convolutions an [`AdaLoraConv2d`] (the only kinds the Python library adapts).
pub(crate) fn svd_layer<'a>(site: SiteMut<'a>, name: &str) -> Option<&'a mut dyn SvdLayer> {
    match site {
        SiteMut::Linear(s) => s.adapters.get_mut(name)?.downcast_mut::<AdaLoraLinear>().map(|l| l as &mut dyn SvdLayer),
        SiteMut::Conv2d(s) => s.adapters.get_mut(name)?.downcast_mut::<AdaLoraConv2d>().map(|l| l as &mut dyn SvdLayer),
        _ => None,
    }
}

/// The AdaLoRA layers of adapter `name`, by site path, mutably.
pub(crate) fn each_layer<M: AdapterSites>(model: &mut M, name: &str, f: &mut dyn FnMut(&str, &mut dyn SvdLayer)) {
    model.visit_sites_mut(&mut |path, site| {
        if let Some(layer) = svd_layer(site, name) {
            f(path, layer);
        }
    });
}

/// The ids of the factors (`A`, `E`, `B`) of every AdaLoRA layer of adapter `name`, linear and
/// convolution layers alike: the parameters whose gradients [`super::update_and_allocate`] reads.
pub fn factor_ids<M: AdapterSites>(model: &M, name: &str) -> Vec<ParamId> {
    let mut ids = Vec::new();
    model.visit_sites(&mut |_, site| {
        if let Some(layer) = svd_layer(site, name) {
            ids.extend(layer.factors().map(|p| p.id));
        }
    });
    ids
}

/// `E` with the ranks whose flag in `keep` is false set to zero, keeping the parameter's identity
/// and whether it requires gradients.
pub(crate) fn masked_singular_values(e: &Param<Tensor<2>>, keep: &[bool]) -> Param<Tensor<2>> {
    let r = keep.len();
    let dropped: Vec<bool> = keep.iter().map(|k| !k).collect();
    e.clone().map(|t| {
        let (trains, autodiff) = (t.is_require_grad(), t.is_autodiff());
        // On the plain tensor, then back as a fresh leaf: the value changes outside any graph.
        let plain = t.inner();
        let dropped = Tensor::<2, Bool>::from_data(TensorData::new(dropped, [r, 1]), &plain.device());
        let masked = plain.mask_fill(dropped, 0.0);
        if autodiff { Tensor::from_inner(masked).set_require_grad(trains) } else { masked }
    })
}

/// A factor cut to the `kept` ranks (rows when `rows`, else columns), as the Python library cuts
/// the state dict by `rank_pattern` on save; unchanged when every rank is kept or `kept` does
/// not fit the layer's `rank`.
pub(crate) fn cut_to_kept(data: TensorData, kept: Option<&[bool]>, rank: usize, rows: bool) -> TensorData {
    let Some(kept) = kept.filter(|k| k.len() == rank && k.iter().any(|x| !x)) else { return data };
    let shape = data.shape().to_vec();
    let values: Vec<f32> = data.convert::<f32>().try_into_vec::<f32>().unwrap_or_default();
    let [n_rows, n_cols] = [shape[0], shape[1]];
    let take = |i: usize, j: usize| if rows { kept[i] } else { kept[j] };
    let mut out = Vec::with_capacity(values.len());
    for i in 0..n_rows {
        for j in 0..n_cols {
            if take(i, j) {
                out.push(values[i * n_cols + j]);
            }
        }
    }
    let k = kept.iter().filter(|x| **x).count();
    let out_shape = if rows { [k, n_cols] } else { [n_rows, k] };
    TensorData::new(out, out_shape)
}
