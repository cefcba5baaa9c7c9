//! Weighted combinations of LoRA adapters (`add_weighted_adapter` in the Python library).
//!
//! - `linear`: `A = sum_i sqrt(w_i s_i) A_i`, `B = sum_i sqrt(w_i s_i) B_i` (equal ranks only);
//! - `cat`: `A = [w_i s_i A_i]` and `B = [B_i]` stacked along the rank, so `B A = sum_i w_i s_i B_i A_i`
//!   exactly;
//! - `svd`: `sum_i w_i s_i B_i A_i` computed in full, then truncated to the new rank by SVD.
//!
//! The new adapter has `lora_alpha = r`, so its own scaling is 1.

use burn::tensor::Tensor;
use peft_core::attach::{SiteAdapter, commit};
use peft_core::{AdapterSites, Error, LoraConfig, Result, SiteMut, TargetModules};

use crate::{LoraEmbedding, LoraLinear};

/// How adapters are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combination {
    /// Weighted sum of the factors (equal ranks).
    Linear,
    /// Factors stacked along the rank: the exact weighted sum of the updates.
    Cat,
    /// The exact weighted sum truncated to `rank` by SVD.
    Svd {
        /// The new adapter's rank.
        rank: usize,
    },
}

/// One source adapter: its name, weight and config.
pub struct Source<'a> {
    /// The adapter's name.
    pub name: &'a str,
    /// Its weight `w_i`.
    pub weight: f64,
    /// Its config.
    pub config: &'a LoraConfig,
}

/// Builds adapter `new_name` from `sources` at every site holding one of them, and returns its config.
///
/// Nothing is attached if any site fails.
pub fn add_weighted_adapter<M: AdapterSites>(
    model: &mut M,
    sources: &[Source<'_>],
    new_name: &str,
    how: Combination,
) -> Result<LoraConfig> {
    let first = sources.first().ok_or_else(|| Error::config("adapters", "[]", "name at least one adapter to combine"))?;
    let ranks: Vec<usize> = sources.iter().map(|s| s.config.r).collect();
    let new_rank = match how {
        Combination::Linear => {
            if ranks.iter().any(|r| *r != ranks[0]) {
                return Err(Error::config("combination_type", "linear", format!("linear needs equal ranks, got {ranks:?}: use cat or svd")));
            }
            ranks[0]
        }
        Combination::Cat => ranks.iter().sum(),
        Combination::Svd { rank } => rank,
    };
    if new_rank == 0 {
        return Err(Error::config("svd_rank", 0, "the new rank must be at least 1"));
    }
    let mut planned_linear: Vec<(String, LoraLinear)> = Vec::new();
    let mut planned_embedding: Vec<(String, LoraEmbedding)> = Vec::new();
    let mut error = None;
    model.visit_sites(&mut |path, site| {
        if error.is_some() {
            return;
        }
        let result = match site {
            SiteMut::Linear(s) => {
                let parts: Vec<(Tensor<2>, Tensor<2>, f64)> = sources
                    .iter()
                    .filter_map(|src| {
                        let a = s.adapters.get(src.name)?.as_any().downcast_ref::<LoraLinear>()?;
                        Some((a.lora_a.val(), a.lora_b.val(), src.weight * a.scaling))
                    })
                    .collect();
                combine(&parts, how, new_rank).map(|f| {
                    if let Some((a, b)) = f {
                        planned_linear.push((path.to_string(), LoraLinear::new(a, b, 1.0, first.config.lora_dropout)));
                    }
                })
            }
            SiteMut::Embedding(s) => {
                let parts: Vec<(Tensor<2>, Tensor<2>, f64)> = sources
                    .iter()
                    .filter_map(|src| {
                        let a = s.adapters.get(src.name)?.as_any().downcast_ref::<LoraEmbedding>()?;
                        Some((a.lora_embedding_a.val(), a.lora_embedding_b.val(), src.weight * a.scaling))
                    })
                    .collect();
                combine(&parts, how, new_rank).map(|f| {
                    if let Some((a, b)) = f {
                        planned_embedding.push((path.to_string(), LoraEmbedding::new(a, b, 1.0)));
                    }
                })
            }
            SiteMut::Conv1d(_) | SiteMut::Conv2d(_) | SiteMut::BatchNorm2d(_) | SiteMut::Attention(_) => Ok(()),
        };
        if let Err(e) = result {
            error = Some(e);
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    if planned_linear.is_empty() && planned_embedding.is_empty() {
        return Err(Error::UnknownAdapter { name: sources.iter().map(|s| s.name).collect::<Vec<_>>().join(", "), available: Vec::new() });
    }
    let targets: Vec<String> = planned_linear.iter().map(|(p, _)| p.clone()).chain(planned_embedding.iter().map(|(p, _)| p.clone())).collect();
    let plan = planned_linear
        .into_iter()
        .map(|(p, a)| (p, SiteAdapter::linear(a)))
        .chain(planned_embedding.into_iter().map(|(p, a)| (p, SiteAdapter::embedding(a))))
        .collect();
    commit(model, new_name, plan)?;
    let mut config = first.config.clone();
    config.r = new_rank;
    config.lora_alpha = new_rank as f64;
    config.rank_pattern.clear();
    config.alpha_pattern.clear();
    config.use_rslora = false;
    config.common.modules_to_save = None;
    config.target_modules = TargetModules::Names(targets.iter().map(|t| t.rsplit('.').next().unwrap_or(t).to_string()).collect::<std::collections::BTreeSet<_>>().into_iter().collect());
    Ok(config)
}

/// Combines `(A_i [in, r_i], B_i [r_i, out], w_i * s_i)`; `None` when no source is at this site.
fn combine(parts: &[(Tensor<2>, Tensor<2>, f64)], how: Combination, new_rank: usize) -> Result<Option<(Tensor<2>, Tensor<2>)>> {
    let Some((a0, b0, _)) = parts.first() else { return Ok(None) };
    let [d_in, _] = a0.dims();
    let [_, d_out] = b0.dims();
    let device = a0.device();
    Ok(Some(match how {
        Combination::Linear => {
            let mut a = Tensor::<2>::zeros([d_in, new_rank], &device);
            let mut b = Tensor::<2>::zeros([new_rank, d_out], &device);
            for (ai, bi, ws) in parts {
                let f = ws.abs().sqrt() * ws.signum();
                a = a + ai.clone().mul_scalar(f);
                b = b + bi.clone().mul_scalar(ws.abs().sqrt());
            }
            (a, b)
        }
        Combination::Cat => {
            let mut a: Vec<Tensor<2>> = parts.iter().map(|(ai, _, ws)| ai.clone().mul_scalar(*ws)).collect();
            let mut b: Vec<Tensor<2>> = parts.iter().map(|(_, bi, _)| bi.clone()).collect();
            let used: usize = parts.iter().map(|(ai, _, _)| ai.dims()[1]).sum();
            // Sources absent from this site leave their rank rows zero, as in the Python library.
            if used < new_rank {
                a.push(Tensor::zeros([d_in, new_rank - used], &device));
                b.push(Tensor::zeros([new_rank - used, d_out], &device));
            }
            (Tensor::cat(a, 1), Tensor::cat(b, 0))
        }
        Combination::Svd { rank } => {
            let delta = parts
                .iter()
                .map(|(ai, bi, ws)| ai.clone().matmul(bi.clone()).mul_scalar(*ws))
                .reduce(|x, y| x + y)
                .unwrap_or_else(|| Tensor::zeros([d_in, d_out], &device));
            // PyTorch orientation `[out, in] = U S Vh`: B = U S, A = Vh (then back to Burn's).
            let (u, s, vh) = burn::linalg::svd::<2, 1>(delta.transpose().detach(), 64);
            let keep = rank.min(s.dims()[0]);
            let u = u.slice([0..d_out, 0..keep]) * s.narrow(0, 0, keep).unsqueeze_dim::<2>(0);
            let vh = vh.slice([0..keep, 0..d_in]);
            let mut a = vh.transpose();
            let mut b = u.transpose();
            if keep < rank {
                a = Tensor::cat(vec![a, Tensor::zeros([d_in, rank - keep], &device)], 1);
                b = Tensor::cat(vec![b, Tensor::zeros([rank - keep, d_out], &device)], 0);
            }
            (a, b)
        }
    }))
}
