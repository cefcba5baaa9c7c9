//! PiSSA and OLoRA: LoRA factors that start from the base weight itself.
//!
//! Both split the base weight `W` into a part the factors hold and a residual the base layer keeps:
//! `W = (W - s B A) + s B A`, so the model's output is unchanged when the adapter is attached, but
//! training moves the most important directions of `W` (PiSSA: the top singular triplets; OLoRA:
//! the first QR factors) rather than a zero update.
//!
//! As in the Python library, the split runs whenever such an adapter is attached, also when its
//! factors come from a file: the base weight becomes the same residual (it depends only on `W`),
//! then the saved factors replace the fresh ones. So a PiSSA/OLoRA adapter loads onto the
//! *original* base model, not onto a residual one.
//!
//! The split runs after everything else of the attach succeeded ([`decompose_bases`]), so a failed
//! load leaves the base weights exactly as they were.

use burn::linalg::{qr, svd};
use burn::tensor::{Distribution, Tensor, TensorData};
use peft_core::adapted::precision::to_adapter_dtype;
use peft_core::adapted::replace_param;
use peft_core::{AdapterSites, Error, InitLoraWeights, LoraConfig, Result, SiteMut};

use crate::LoraLinear;
use crate::dora::DoraLinear;

/// Upper bound on the bidiagonal QR sweeps per singular value (LAPACK needs about 6 in practice).
const SVD_SWEEPS: usize = 100;

/// The split of one base weight, in Burn's orientation.
pub(crate) struct Split {
    /// `A`, shape `[d_input, r]`.
    pub a: Tensor<2>,
    /// `B`, shape `[r, d_output]`.
    pub b: Tensor<2>,
    /// `W - s A B`, shape `[d_input, d_output]`: what the base layer keeps.
    pub residual: Tensor<2>,
}

/// Checks that `init` can split the base weight of the linear layer at `path` (`[d_input,
/// d_output]`) at rank `r`: PiSSA and OLoRA keep at most `min(d_input, d_output)` directions.
pub(crate) fn check_rank(init: &InitLoraWeights, path: &str, r: usize, dims: [usize; 2]) -> Result<()> {
    let most = dims[0].min(dims[1]);
    if init.decomposes_base() && r > most {
        return Err(Error::config(
            "r",
            r,
            format!("{} splits the base weight of `{path}` ({} x {}) into at most {most} directions: use r <= {most}, or rank_pattern for this module", init_name(init), dims[1], dims[0]),
        ));
    }
    Ok(())
}

/// The refusal for PiSSA/OLoRA on a layer the Python library does not split (convolutions).
pub(crate) fn unsupported_on(init: &InitLoraWeights, path: &str, kind: &str) -> Result<()> {
    if init.decomposes_base() {
        return Err(Error::Unsupported {
            what: format!("{} on the {kind} `{path}`", init_name(init)),
            supported: "PiSSA and OLoRA on linear layers; exclude this module (exclude_modules) or use init_lora_weights = true".into(),
        });
    }
    Ok(())
}

fn init_name(init: &InitLoraWeights) -> &'static str {
    match init {
        InitLoraWeights::Olora => "OLoRA",
        _ => "PiSSA",
    }
}

/// Splits `weight` (`[d_input, d_output]`, Burn's orientation) as `init` says, at rank `r` and
/// scaling `s`; `None` for initialisations that leave the base alone.
///
/// - PiSSA: with `Wᵀ = U S Vᵀ` (the top `r` triplets, `S' = S / s`), `A = V_r sqrt(S')` and
///   `B = sqrt(S') U_rᵀ` in the Python library's orientation (`lora_A: [r, d_input]`).
/// - OLoRA: with `Wᵀ = Q R`, `B = Q_r` and `A = R_r` (the first `r` columns and rows).
///
/// Computed in `f32` on the host (Burn's SVD), as the Python library computes it in `f32`; the
/// singular vectors' signs may differ from LAPACK's, which changes neither `B A` nor the residual.
///
/// # Errors
/// [`Error::InvalidConfig`] when the weight holds NaN or infinite values (nothing to split).
pub(crate) fn split(init: &InitLoraWeights, path: &str, weight: Tensor<2>, r: usize, scaling: f64) -> Result<Option<Split>> {
    if !init.decomposes_base() {
        return Ok(None);
    }
    // Burn's SVD is not an autodiff operation: the split runs on the device without autodiff,
    // and its results move back to the weight's device. The weight is read once, for both.
    let device = weight.device();
    let data = weight.to_data();
    check_finite(&data, path)?;
    let weight = Tensor::<2>::from_data(data, &device.clone().inner());
    let (a, b) = match init {
        InitLoraWeights::Olora => olora(weight.clone(), r),
        InitLoraWeights::Pissa { niter: Some(niter) } => pissa_randomised(weight.clone(), r, scaling, *niter),
        _ => pissa(weight.clone(), r, scaling),
    };
    let residual = weight - a.clone().matmul(b.clone()).mul_scalar(scaling);
    let back = |t: Tensor<2>| Tensor::<2>::from_data(t.into_data(), &device);
    Ok(Some(Split { a: back(a), b: back(b), residual: back(residual) }))
}

fn check_finite(data: &TensorData, path: &str) -> Result<()> {
    let finite = data.iter::<f32>().all(f32::is_finite);
    if finite {
        Ok(())
    } else {
        Err(Error::config(
            "init_lora_weights",
            format!("a split of `{path}`"),
            "the base weight holds NaN or infinite values; load a sound checkpoint or use init_lora_weights = true",
        ))
    }
}

/// Exact PiSSA. Burn's weight is `Wᵀ`, so its left singular vectors are the input side.
fn pissa(weight: Tensor<2>, r: usize, scaling: f64) -> (Tensor<2>, Tensor<2>) {
    let (u, s, vt) = svd::<2, 1>(weight, SVD_SWEEPS);
    let root = s.narrow(0, 0, r).div_scalar(scaling).sqrt();
    let a = u.narrow(1, 0, r) * root.clone().unsqueeze_dim::<2>(0);
    let b = vt.narrow(0, 0, r) * root.unsqueeze_dim::<2>(1);
    (a, b)
}

/// PiSSA from a randomised SVD (Halko et al. 2011, with `q = r` and `niter` subspace iterations,
/// as PyTorch's `svd_lowrank`), on `W = weightᵀ` (`[d_output, d_input]`).
fn pissa_randomised(weight: Tensor<2>, r: usize, scaling: f64, niter: usize) -> (Tensor<2>, Tensor<2>) {
    let w = weight.transpose();
    let [_, d_in] = w.dims();
    let probe = Tensor::<2>::random([d_in, r], Distribution::Normal(0.0, 1.0), &w.device());
    let mut basis = orthonormal(w.clone().matmul(probe));
    for _ in 0..niter {
        let row_side = orthonormal(w.clone().transpose().matmul(basis));
        basis = orthonormal(w.clone().matmul(row_side));
    }
    // W ≈ Q (Qᵀ W), and the small `[r, d_input]` matrix has an exact SVD.
    let (small_u, s, vt) = svd::<2, 1>(basis.clone().transpose().matmul(w), SVD_SWEEPS);
    let u = basis.matmul(small_u);
    let root = s.div_scalar(scaling).sqrt();
    // A = sqrt(S') Vᵀ ([r, d_input]) and B = U sqrt(S') ([d_output, r]), then Burn's orientation.
    let a = vt.transpose() * root.clone().unsqueeze_dim::<2>(0);
    let b = u.transpose() * root.unsqueeze_dim::<2>(1);
    (a, b)
}

/// The `Q` of a reduced QR decomposition: an orthonormal basis of `x`'s columns.
fn orthonormal(x: Tensor<2>) -> Tensor<2> {
    qr(x, true).0
}

/// OLoRA: `W = Q R` with `W = weightᵀ` (`[d_output, d_input]`); `B = Q_r`, `A = R_r`.
fn olora(weight: Tensor<2>, r: usize) -> (Tensor<2>, Tensor<2>) {
    let (q, rr) = qr(weight.transpose(), true);
    let b = q.narrow(1, 0, r).transpose(); // [r, d_output]
    let a = rr.narrow(0, 0, r).transpose(); // [d_input, r]
    (a, b)
}

/// Splits the base weight of every linear site holding LoRA adapter `name`, when its config asks
/// for PiSSA or OLoRA: the base keeps the residual, and a `fresh` adapter (not loaded from a file)
/// starts from the split's factors. Call it once the adapter is attached everywhere and every
/// other check passed.
///
/// All splits are computed before any weight changes, so on error the model is as it was.
///
/// The split changes the base model for every other adapter too; as in the Python library, a
/// warning says so when the model holds other adapters at those sites.
pub fn decompose_bases<M: AdapterSites>(model: &mut M, name: &str, config: &LoraConfig, fresh: bool) -> Result<()> {
    let init = &config.init_lora_weights;
    if !init.decomposes_base() {
        return Ok(());
    }
    let mut splits = Vec::new();
    let mut shared = false;
    let mut error = None;
    model.visit_sites_mut(&mut |path, site| {
        let SiteMut::Linear(site) = site else { return };
        if error.is_some() || site.adapters.get(name).is_none() {
            return;
        }
        shared |= site.adapters.names().len() > 1;
        let r = config.rank_for(path);
        // In f32 whatever the base's type; the residual returns to it in `replace_base_weight`.
        match split(init, path, to_adapter_dtype(site.base_weight()), r, config.scaling_for(path)) {
            Ok(Some(split)) => splits.push((path.to_string(), split)),
            Ok(None) => {}
            Err(e) => error = Some(e),
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    if shared {
        log::warn!(
            "adapter `{name}` ({}) changes the base weights the model's other adapters sit on; convert it to plain LoRA (save_pretrained_as_lora) to combine it with others",
            init_name(init)
        );
    }
    let mut splits = splits.into_iter();
    let mut next = splits.next();
    model.visit_sites_mut(&mut |path, site| {
        let SiteMut::Linear(site) = site else { return };
        let Some((split_path, _)) = &next else { return };
        if split_path != path {
            return;
        }
        let Some((_, split)) = next.take() else { return };
        next = splits.next();
        site.replace_base_weight(split.residual);
        if fresh && let Some(adapter) = site.adapters.get_mut(name) {
            if let Some(dora) = adapter.downcast_mut::<DoraLinear>() {
                start_from(&mut dora.lora, split.a, split.b);
            } else if let Some(lora) = adapter.downcast_mut::<LoraLinear>() {
                start_from(lora, split.a, split.b);
            }
        }
    });
    Ok(())
}

fn start_from(lora: &mut LoraLinear, a: Tensor<2>, b: Tensor<2>) {
    lora.lora_a = replace_param(&lora.lora_a, a);
    lora.lora_b = replace_param(&lora.lora_b, b);
}


#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// `U diag(sigma) Vᵀ` plus a little noise, `[d_input, d_output]`, with a clear gap after the
    /// fourth singular value.
    fn low_rank_plus_noise(device: &Device) -> Tensor<2> {
        let u = burn::linalg::qr(Tensor::<2>::random([24, 4], Distribution::Normal(0.0, 1.0), device), true).0;
        let v = burn::linalg::qr(Tensor::<2>::random([16, 4], Distribution::Normal(0.0, 1.0), device), true).0;
        let sigma = Tensor::<1>::from_data(TensorData::from([10.0f32, 8.0, 6.0, 4.0]), device);
        let noise = Tensor::<2>::random([24, 16], Distribution::Normal(0.0, 1e-3), device);
        (u * sigma.unsqueeze_dim::<2>(0)).matmul(v.transpose()) + noise
    }

    fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn every_split_keeps_the_weight_and_pissa_takes_the_top_directions() {
        let device = Device::default();
        let weight = low_rank_plus_noise(&device);
        let scaling = 2.0;
        let exact = split(&InitLoraWeights::Pissa { niter: None }, "w", weight.clone(), 4, scaling).expect("splits").expect("PiSSA");
        let top = exact.a.clone().matmul(exact.b.clone()).mul_scalar(scaling);
        // The residual is the noise: the top four directions went into the factors.
        assert!(exact.residual.clone().abs().max().into_scalar::<f32>() < 1e-2);
        for init in [InitLoraWeights::Pissa { niter: None }, InitLoraWeights::Pissa { niter: Some(4) }, InitLoraWeights::Olora] {
            let s = split(&init, "w", weight.clone(), 4, scaling).expect("splits").expect("decomposes");
            assert_eq!(s.a.dims(), [24, 4], "{init:?}: A");
            assert_eq!(s.b.dims(), [4, 16], "{init:?}: B");
            let rebuilt = s.residual + s.a.clone().matmul(s.b.clone()).mul_scalar(scaling);
            assert!(max_diff(rebuilt, weight.clone()) < 1e-4, "{init:?}: W = residual + s A B");
            if init != InitLoraWeights::Olora {
                // The randomised SVD finds the same directions when the spectrum has a gap.
                assert!(max_diff(s.a.matmul(s.b).mul_scalar(scaling), top.clone()) < 1e-2, "{init:?}: the top directions");
            }
        }
        assert!(split(&InitLoraWeights::Default, "w", weight, 4, scaling).expect("no split").is_none());
    }

    #[test]
    fn a_weight_with_nan_is_refused_before_the_svd() {
        let device = Device::default();
        let weight = Tensor::<2>::from_data(TensorData::from([[1.0f32, f32::NAN], [0.0, 1.0]]), &device);
        let err = split(&InitLoraWeights::Pissa { niter: None }, "layer", weight, 1, 1.0).err().expect("NaN");
        assert!(err.to_string().contains("NaN"), "{err}");
    }
}
