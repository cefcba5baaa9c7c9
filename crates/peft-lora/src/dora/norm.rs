//! Column norms of `W0 + s A B` without forming the sum, and the norm a merge remembers.

use burn::tensor::Tensor;
use std::sync::{Arc, Mutex};

/// `||W0 + s A B||` per output column, without materialising `W0 + s A B`.
///
/// `||w_j + s (A B)_j||^2 = ||w_j||^2 + 2 s <A^T w_j, b_j> + s^2 b_j^T (A^T A) b_j`, so the cost is
/// one `[r, d_in] x [d_in, d_out]` product and a few `[r, d_out]` ones. Inputs are detached: DoRA
/// treats the norm as a constant.
///
/// # Shapes
/// - `weight`: `[d_in, d_out]`, `a`: `[d_in, r]`, `b`: `[r, d_out]`
/// - output: `[d_out]`
pub fn column_norms(weight: Tensor<2>, a: Tensor<2>, b: Tensor<2>, scaling: f64) -> Tensor<1> {
    let (weight, a, b) = (weight.detach(), a.detach(), b.detach());
    let [_, d_out] = weight.dims();
    let a_t = a.clone().transpose();
    let base = weight.clone().powi_scalar(2).sum_dim(0);
    let cross = a_t.clone().matmul(weight).mul(b.clone()).sum_dim(0);
    let delta = a_t.matmul(a).matmul(b.clone()).mul(b).sum_dim(0);
    let squared = base + cross.mul_scalar(2.0 * scaling) + delta.mul_scalar(scaling * scaling);
    // Rounding can make a zero column's square a tiny negative number.
    squared.clamp_min(0.0).sqrt().reshape([d_out])
}

/// The norms a merge used, kept so that unmerging can divide them out again: after the merge the
/// base weight no longer holds `W0`, so they cannot be recomputed (the Python library caches them
/// the same way).
///
/// Not a parameter and never saved. Clones made while merged share the value (a module clone is
/// the same merged layer).
#[derive(Clone, Debug, Default)]
pub(crate) struct MergedNorm(Arc<Mutex<Option<Tensor<1>>>>);

impl MergedNorm {
    pub(crate) fn store(&self, norms: Tensor<1>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(norms);
        }
    }

    pub(crate) fn take(&self) -> Option<Tensor<1>> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn equal_the_norms_of_the_formed_weight() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let w = Tensor::<2>::random([7, 5], Distribution::Normal(0.0, 1.0), &device);
        let a = Tensor::<2>::random([7, 3], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([3, 5], Distribution::Normal(0.0, 1.0), &device);
        let formed = (w.clone() + a.clone().matmul(b.clone()).mul_scalar(0.7)).powi_scalar(2).sum_dim(0).sqrt().reshape([5]);
        let fast = column_norms(w, a, b, 0.7);
        let diff = (formed - fast).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "max diff {diff}");
    }
}
