//! AdaLoRA's orthogonality regulariser on the singular vectors.

use burn::tensor::Tensor;
use peft_core::AdapterSites;

use super::svd::svd_layer;

/// `mean over the factors P of ||P Pᵀ - I||_F` of adapter `name`: `A Aᵀ` (`[r, r]`) for each
/// `A: [r, d_input]` and `Bᵀ B` (`[r, r]`) for each `B: [d_output, r]` (linear and
/// convolution layers alike), as the Python library's
/// `AdaLoraModel.forward` adds it (times `orth_reg_weight`) to the loss. Differentiable; `None`
/// when the model has no AdaLoRA layer named `name`.
///
/// # Shapes
/// - output: `[1]`
pub fn orth_regularization<M: AdapterSites>(model: &M, name: &str) -> Option<Tensor<1>> {
    let mut total: Option<Tensor<1>> = None;
    let mut count = 0usize;
    model.visit_sites(&mut |_, site| {
        let Some(layer) = svd_layer(site, name) else { return };
        count += 2;
        if layer.rank() == 0 {
            // `||[] - []||_F` is zero; the factors still count, as in Python.
            return;
        }
        let [a, _, b] = layer.factors().map(|p| p.val());
        let term = distance_from_identity(a.clone().matmul(a.transpose())) + distance_from_identity(b.clone().transpose().matmul(b));
        total = Some(match total.take() {
            Some(t) => t + term,
            None => term,
        });
    });
    if count == 0 {
        return None;
    }
    let device = model.devices().into_iter().next().unwrap_or_default();
    Some(total.unwrap_or_else(|| Tensor::zeros([1], &device)).div_scalar(count as f64))
}

/// `||C - I||_F` of a square matrix `C: [r, r]`, shape `[1]`.
fn distance_from_identity(cov: Tensor<2>) -> Tensor<1> {
    let r = cov.dims()[0];
    let eye = Tensor::<2>::eye(r, &cov.device());
    let diff = cov - eye;
    (diff.clone() * diff).sum().sqrt()
}
