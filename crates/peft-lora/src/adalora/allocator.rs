//! AdaLoRA's rank allocator: importance scores, the budget schedule and the masks.
//!
//! As the Python library's `RankAllocator` and `AdaLoraModel.update_and_allocate`:
//! - the sensitivity of each factor entry is `I = |w * ∂L/∂w|`, smoothed as
//!   `Ī ← β1 Ī + (1 - β1) I`, with uncertainty `Ū ← β2 Ū + (1 - β2) |I - Ī|`; an entry scores
//!   `Ī * Ū`;
//! - rank `i` of a layer (the triplet `A[i, :]`, `E[i]`, `B[:, i]`) scores
//!   `s(E[i]) + mean_j s(A[i, j]) + mean_j s(B[j, i])`;
//! - the budget (ranks kept over all layers) follows [`budget_schedule`]: `init_r * n` up to
//!   `tinit`, then a cubic decrease to `target_r * n` at `total_step - tfinal`, then constant;
//! - every `deltaT` steps during the decrease, and once at `total_step - tfinal`, the
//!   lowest-scoring ranks are masked (`E[i] = 0`) so that the budget remains (ties at the
//!   threshold are all masked); after that the final mask is applied again at every step.

use burn::module::ParamId;
use burn::tensor::Tensor;
use indexmap::IndexMap;
use peft_core::{AdaLoraConfig, AdapterSites, Error, Result};

use super::svd::each_layer;

/// The moving averages of one layer's factors: `(Ī, Ū)` for `A`, `E` and `B`.
#[derive(Clone, Debug)]
pub(crate) struct Importance {
    a: (Tensor<2>, Tensor<2>),
    e: (Tensor<2>, Tensor<2>),
    b: (Tensor<2>, Tensor<2>),
}

/// The budget (ranks kept over all `n` layers) at `step`, and whether the step masks.
///
/// `init_budget` is `init_r * n`, `target_budget` is `target_r * n`. Between `tinit` and
/// `total_step - tfinal` the budget is `floor((init - target) * (1 - (step - tinit) /
/// (total_step - tfinal - tinit))^3 + target)` and masking happens when `step % deltaT == 0`.
pub fn budget_schedule(config: &AdaLoraConfig, init_budget: usize, target_budget: usize, step: usize) -> (usize, bool) {
    let total = config.total_step.unwrap_or(0) as i64;
    let (tinit, tfinal, step) = (config.tinit as i64, config.tfinal as i64, step as i64);
    if step <= tinit {
        (init_budget, false)
    } else if step > total - tfinal {
        (target_budget, true)
    } else {
        let mul_coeff = 1.0 - (step - tinit) as f64 / (total - tfinal - tinit) as f64;
        // `powf`, not `powi`: the same libm `pow` as Python's `**`, so the floor agrees.
        let budget = (init_budget as f64 - target_budget as f64) * mul_coeff.powf(3.0) + target_budget as f64;
        (budget as usize, step % config.delta_t.max(1) as i64 == 0)
    }
}

/// What one [`update_and_allocate`] call did.
#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    /// The budget of this step (ranks kept over all layers).
    pub budget: usize,
    /// The new rank pattern when this step masked (also stored in the config).
    pub rank_pattern: Option<IndexMap<String, Vec<bool>>>,
}

/// The key of a layer's entry in `rank_pattern`, as the Python library saves it.
pub fn rank_pattern_key(path: &str) -> String {
    format!("{path}.lora_E")
}

/// One training step of AdaLoRA's allocation for adapter `name`, as the Python library's
/// `update_and_allocate(global_step)`: updates the importance scores from the gradients (before
/// `total_step - tfinal`), masks the singular values to the step's budget when the schedule says
/// so, and stores the rank pattern in `config`.
///
/// `gradient` gives a parameter's gradient by id (`GradientsParams::get` of Burn's optimizers).
///
/// # Errors
/// [`Error::InvalidState`] when a factor has no gradient while scores are updated (call it after
/// `backward`, with the gradients of the adapter's parameters), when the adapter has no AdaLoRA
/// layer, or when a step after `total_step - tfinal` finds no rank pattern.
pub fn update_and_allocate<M: AdapterSites>(
    model: &mut M,
    name: &str,
    config: &mut AdaLoraConfig,
    step: usize,
    gradient: &dyn Fn(ParamId) -> Option<Tensor<2>>,
) -> Result<Allocation> {
    config.validate()?;
    let total = config.total_step.unwrap_or(0);
    let end_of_budgeting = total - config.tfinal;
    let mut layers = 0;
    each_layer(model, name, &mut |_, _| layers += 1);
    if layers == 0 {
        return Err(Error::InvalidState(format!("adapter `{name}` has no AdaLoRA layer to allocate ranks for")));
    }
    let (init_budget, target_budget) = (config.init_r * layers, config.target_r * layers);
    let (budget, mask) = budget_schedule(config, init_budget, target_budget, step);
    if step > end_of_budgeting {
        let pattern = config.rank_pattern.clone().ok_or_else(|| {
            Error::InvalidState(format!(
                "step {step} is past total_step - tfinal ({end_of_budgeting}) but adapter `{name}` has no rank_pattern: \
                 call update_and_allocate at every step, from step 0"
            ))
        })?;
        apply_rank_pattern(model, name, &pattern);
        return Ok(Allocation { budget, rank_pattern: None });
    }
    if step < end_of_budgeting {
        update_importance(model, name, config, gradient)?;
    }
    if !(mask || step == end_of_budgeting) {
        return Ok(Allocation { budget, rank_pattern: None });
    }
    let pattern = mask_to_budget(model, name, init_budget, budget)?;
    config.rank_pattern = Some(pattern.clone());
    if step == end_of_budgeting {
        each_layer(model, name, &mut |_, layer| *layer.importance_mut() = None);
    }
    Ok(Allocation { budget, rank_pattern: Some(pattern) })
}

/// `Ī` and `Ū` of every factor, updated with this step's `|w * grad|`.
fn update_importance<M: AdapterSites>(
    model: &mut M,
    name: &str,
    config: &AdaLoraConfig,
    gradient: &dyn Fn(ParamId) -> Option<Tensor<2>>,
) -> Result<()> {
    let (beta1, beta2) = (config.beta1, config.beta2);
    let mut missing = None;
    each_layer(model, name, &mut |path, layer| {
        let mut next = |param: &burn::module::Param<Tensor<2>>, tensor: &str, old: Option<&(Tensor<2>, Tensor<2>)>| {
            let Some(grad) = gradient(param.id) else {
                missing.get_or_insert_with(|| format!("{path}.{tensor}"));
                return None;
            };
            let ipt = (param.val().inner() * grad.inner()).abs();
            let (avg, unc) = match old {
                Some((avg, unc)) => (avg.clone(), unc.clone()),
                None => (ipt.zeros_like(), ipt.zeros_like()),
            };
            let avg = avg.mul_scalar(beta1) + ipt.clone().mul_scalar(1.0 - beta1);
            let unc = unc.mul_scalar(beta2) + (ipt - avg.clone()).abs().mul_scalar(1.0 - beta2);
            Some((avg, unc))
        };
        let old = layer.importance_mut().take();
        let [lora_a, lora_e, lora_b] = layer.factors();
        let a = next(lora_a, "lora_A", old.as_ref().map(|o| &o.a));
        let e = next(lora_e, "lora_E", old.as_ref().map(|o| &o.e));
        let b = next(lora_b, "lora_B", old.as_ref().map(|o| &o.b));
        *layer.importance_mut() = match (a, e, b) {
            (Some(a), Some(e), Some(b)) => Some(Importance { a, e, b }),
            _ => old,
        };
    });
    match missing {
        None => Ok(()),
        Some(key) => Err(Error::InvalidState(format!(
            "no gradient for `{key}`: call update_and_allocate after backward, with the gradients of the trainable AdaLoRA adapter"
        ))),
    }
}

/// The score of each rank of a layer: `s(E) + (mean over a row of s(A) + mean over a column of s(B))`.
fn rank_scores(importance: &Importance) -> Vec<f32> {
    let score = |(avg, unc): &(Tensor<2>, Tensor<2>)| avg.clone() * unc.clone();
    let r = importance.e.0.dims()[0];
    let a = score(&importance.a).mean_dim(1).reshape([r]);
    let b = score(&importance.b).mean_dim(0).reshape([r]);
    let e = score(&importance.e).reshape([r]);
    let sum = e + (a + b);
    sum.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

/// Masks every rank scoring at or below the `(init_budget - budget)`-th smallest score.
fn mask_to_budget<M: AdapterSites>(model: &mut M, name: &str, init_budget: usize, budget: usize) -> Result<IndexMap<String, Vec<bool>>> {
    let mut scores: Vec<(String, Vec<f32>)> = Vec::new();
    let mut unscored = None;
    each_layer(model, name, &mut |path, layer| match layer.importance_mut() {
        Some(importance) => scores.push((path.to_string(), rank_scores(importance))),
        None => {
            unscored.get_or_insert_with(|| path.to_string());
        }
    });
    if let Some(path) = unscored {
        return Err(Error::InvalidState(format!(
            "`{path}` has no importance scores yet: call update_and_allocate with gradients before the first masking step"
        )));
    }
    let mut all: Vec<f32> = scores.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    all.sort_by(f32::total_cmp);
    let k = init_budget.saturating_sub(budget).clamp(1, all.len().max(1));
    let threshold = all.get(k - 1).copied().unwrap_or(f32::NEG_INFINITY);
    let pattern: IndexMap<String, Vec<bool>> =
        scores.into_iter().map(|(path, s)| (rank_pattern_key(&path), s.into_iter().map(|x| x > threshold).collect())).collect();
    apply_rank_pattern(model, name, &pattern);
    Ok(pattern)
}

/// Zeroes the singular values `pattern` drops and records the kept ranks for saving; layers
/// without an entry (or whose rank differs from the entry's length) are left alone.
pub fn apply_rank_pattern<M: AdapterSites>(model: &mut M, name: &str, pattern: &IndexMap<String, Vec<bool>>) {
    each_layer(model, name, &mut |path, layer| {
        if let Some(keep) = pattern.get(&rank_pattern_key(path)).filter(|k| k.len() == layer.rank()) {
            layer.mask_singular_values(keep);
            *layer.kept_mut() = Some(keep.clone());
        }
    });
}
