//! Mixed-adapter batches for sites without a low-rank form.

use burn::tensor::{Bool, Tensor, TensorData};

use super::set::RowAdapters;

/// Applies, to each row of `y`, the adapter its row names (`None`: the base output unchanged).
///
/// Each distinct adapter runs once on the whole batch and its rows are kept by a mask; for
/// low-rank adapters on linear layers a single gathered product is used instead.
pub(crate) fn select_rows<const D: usize>(
    y: Tensor<D>,
    rows: &RowAdapters,
    mut apply: impl FnMut(usize, Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    let dims = y.dims();
    if rows.len() != dims[0] {
        return y;
    }
    let mut used: Vec<usize> = rows.iter().flatten().copied().collect();
    used.sort_unstable();
    used.dedup();
    let mut out = y.clone();
    for index in used {
        let flags: Vec<bool> = rows.iter().map(|r| *r == Some(index)).collect();
        let mut mask_dims = [1usize; D];
        mask_dims[0] = dims[0];
        let mask = Tensor::<D, Bool>::from_data(TensorData::new(flags, mask_dims), &y.device()).expand(dims);
        out = out.mask_where(mask, apply(index, y.clone()));
    }
    out
}
