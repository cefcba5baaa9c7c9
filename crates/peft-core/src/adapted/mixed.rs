//! Mixed-adapter batches for adapters without a low-rank form.

use burn::tensor::{Bool, Tensor, TensorData};

/// Replaces each row `i` of `y` whose entry `rows[i]` is `Some(index)` by that row of
/// `apply(index, y)`; rows marked `None` keep `y`. `rows` has one entry per row of `y` (the
/// callers check this through [`super::RowAdapters::for_batch`]).
///
/// Each distinct adapter runs once on the whole batch and its rows are kept by a mask: simple,
/// and exact for row-wise layers; low-rank adapters on linear layers use one gathered product
/// instead.
pub(crate) fn select_rows<const D: usize>(
    y: Tensor<D>,
    rows: &[Option<usize>],
    mut apply: impl FnMut(usize, Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    let dims = y.dims();
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
