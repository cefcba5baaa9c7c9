//! Weighted combinations of (IA)³ adapters (`add_weighted_adapter` in the Python library).
//!
//! At every site holding one of the sources, the new vector is `l = sum_i w_i l_i` over the
//! sources present there (those absent add nothing). Its config is the first source's with the
//! union of the sources' `target_modules` and `feedforward_modules`.

use burn::tensor::Tensor;
use peft_core::attach::{SiteAdapter, commit};
use peft_core::{AdapterSites, Error, Ia3Config, Result, SiteMut, TargetModules};

use crate::{Ia3Conv2d, Ia3Linear};

/// One source adapter: its name, weight and config.
pub struct Source<'a> {
    /// The adapter's name.
    pub name: &'a str,
    /// Its weight `w_i`.
    pub weight: f64,
    /// Its config.
    pub config: &'a Ia3Config,
}

/// Builds adapter `new_name` from `sources` at every site holding one of them, and returns its
/// config. Nothing is attached if any site fails.
///
/// # Errors
/// [`Error::InvalidConfig`] for no sources, or sources whose `target_modules` (or
/// `feedforward_modules`) are of different kinds (names and a regular expression), as the Python
/// library refuses; [`Error::InvalidState`] where sources disagree at one site (one scales the
/// input, another the output); [`Error::UnknownAdapter`] when no site holds any source.
pub fn add_weighted_adapter<M: AdapterSites>(model: &mut M, sources: &[Source<'_>], new_name: &str) -> Result<Ia3Config> {
    let first = sources.first().ok_or_else(|| Error::config("adapters", "[]", "name at least one adapter to combine"))?;
    let target_modules = union(sources.iter().map(|s| &s.config.target_modules), "target_modules")?;
    let feedforward_modules = union(sources.iter().map(|s| &s.config.feedforward_modules), "feedforward_modules")?;
    let mut plan: Vec<(String, SiteAdapter)> = Vec::new();
    let mut error = None;
    model.visit_sites(&mut |path, site| {
        if error.is_some() {
            return;
        }
        let planned = match site {
            SiteMut::Linear(s) => {
                let parts = sources.iter().filter_map(|src| {
                    let a = s.adapters.get(src.name)?.as_any().downcast_ref::<Ia3Linear>()?;
                    Some((a.ia3_l.val(), a.feedforward, src.weight))
                });
                weighted_sum(parts.collect(), path).map(|v| v.map(|(l, ff)| SiteAdapter::linear(Ia3Linear::new(l, ff))))
            }
            SiteMut::Conv2d(s) => {
                let mut groups = 1;
                let parts = sources.iter().filter_map(|src| {
                    let a = s.adapters.get(src.name)?.as_any().downcast_ref::<Ia3Conv2d>()?;
                    groups = a.groups;
                    Some((a.ia3_l.val(), a.feedforward, src.weight))
                });
                let parts: Vec<_> = parts.collect();
                weighted_sum(parts, path).map(|v| v.map(|(l, ff)| SiteAdapter::conv2d(Ia3Conv2d::new(l, ff, groups))))
            }
            _ => Ok(None),
        };
        match planned {
            Ok(Some(adapter)) => plan.push((path.to_string(), adapter)),
            Ok(None) => {}
            Err(e) => error = Some(e),
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    if plan.is_empty() {
        return Err(Error::UnknownAdapter { name: sources.iter().map(|s| s.name).collect::<Vec<_>>().join(", "), available: Vec::new() });
    }
    commit(model, new_name, plan)?;
    let mut config = first.config.clone();
    config.target_modules = target_modules;
    config.feedforward_modules = feedforward_modules;
    // The copies of `modules_to_save` belong to their adapters; the combination trains none.
    config.common.modules_to_save = None;
    Ok(config)
}

/// `sum_i w_i l_i` of the `(l_i, feedforward_i, w_i)` present at one site; `None` when none is.
fn weighted_sum(parts: Vec<(Tensor<1>, bool, f64)>, path: &str) -> Result<Option<(Tensor<1>, bool)>> {
    let Some((first, feedforward, _)) = parts.first() else { return Ok(None) };
    let (feedforward, len) = (*feedforward, first.dims()[0]);
    if parts.iter().any(|(l, ff, _)| *ff != feedforward || l.dims()[0] != len) {
        return Err(Error::InvalidState(format!(
            "the adapters to combine differ at `{path}`: some scale its input (feedforward_modules), others its output"
        )));
    }
    let sum = parts.into_iter().map(|(l, _, w)| l.mul_scalar(w)).reduce(|a, b| a + b);
    Ok(sum.map(|l| (l, feedforward)))
}

/// The union of the sources' module lists, as the Python library forms it: names are merged (a
/// set), regular expressions joined as `(a)|(b)`; kinds may not be mixed.
fn union<'a>(lists: impl Iterator<Item = &'a TargetModules>, field: &'static str) -> Result<TargetModules> {
    let lists: Vec<&TargetModules> = lists.collect();
    if lists.iter().all(|l| matches!(l, TargetModules::Names(_))) {
        let mut names: Vec<String> = lists.iter().flat_map(|l| l.names().iter().cloned()).collect();
        names.sort();
        names.dedup();
        return Ok(TargetModules::Names(names));
    }
    if lists.iter().all(|l| matches!(l, TargetModules::Regex(_))) {
        let joined: Vec<String> = lists.iter().filter_map(|l| if let TargetModules::Regex(r) = l { Some(format!("({r})")) } else { None }).collect();
        return Ok(TargetModules::Regex(joined.join("|")));
    }
    if lists.iter().all(|l| matches!(l, TargetModules::AllLinear)) {
        return Ok(TargetModules::AllLinear);
    }
    Err(Error::config(
        field,
        lists.iter().map(|l| l.describe()).collect::<Vec<_>>().join(", "),
        "all adapters to combine must give it the same way (all name lists, or all regular expressions)",
    ))
}
