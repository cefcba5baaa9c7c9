//! Adapter sites listed by composition: what `#[derive(AdapterSites)]` (crate `peft-derive`)
//! builds on.
//!
//! A model's [`AdapterSites::visit_sites_mut`](crate::AdapterSites::visit_sites_mut) names every
//! site by its full dotted path. [`SiteVisit`] is the same walk for one piece of a model, under a
//! prefix its parent gives: a layer (`AdaptedLinear`, ...) reports itself at the prefix, a `Vec`
//! adds index segments (`layers.0`), an `Option` reports its content if any, and a derived struct
//! adds one segment per field. So nested modules compose without any path written by hand.

use crate::adapted::{AdaptedBatchNorm2d, AdaptedConv1d, AdaptedConv2d, AdaptedEmbedding, AdaptedLinear};
use crate::site::SiteMut;

/// A part of a model that holds adapter sites, listed under a path prefix.
///
/// Implemented by the adapted layers (a site each), by `Vec`, arrays and `Option` of implementors,
/// and by every struct that derives `AdapterSites`. Implement it by hand for a module whose sites
/// the derive cannot see (an enum, say) and mark its field `#[peft(sites)]`.
///
/// ```
/// use burn::tensor::Device;
/// use peft_core::{AdaptedLinear, SiteKind, SiteVisit};
///
/// let device = Device::default();
/// let mut layers = vec![AdaptedLinear::new(4, 4, true, &device), AdaptedLinear::new(4, 2, true, &device)];
/// let mut seen = Vec::new();
/// layers.visit_sites_at("model.layers", &mut |path, site| seen.push((path.to_string(), site.kind())));
/// assert_eq!(seen, [("model.layers.0".to_string(), SiteKind::Linear), ("model.layers.1".to_string(), SiteKind::Linear)]);
/// ```
pub trait SiteVisit {
    /// Calls `f` with each site's path (under `prefix`; `""` at the model's root) and the site,
    /// always in the same order.
    fn visit_sites_at(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>));

    /// Appends the paths (under `prefix`) of the sites that are output heads, which
    /// `"all-linear"` leaves out. None by default: a layer is a head only because its parent says
    /// so (`#[peft(head)]`).
    fn head_paths_at(&self, prefix: &str, out: &mut Vec<String>) {
        let _ = (prefix, out);
    }
}

/// `prefix.name`, or `name` at the root (empty prefix).
///
/// ```
/// assert_eq!(peft_core::join_path("", "fc1"), "fc1");
/// assert_eq!(peft_core::join_path("model.layers.0", "q_proj"), "model.layers.0.q_proj");
/// ```
pub fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

/// The path of every site in `part` under `prefix`, in visiting order: what a `#[peft(head)]`
/// field contributes to the output heads.
///
/// Visits a clone because listing needs `&mut` while heads are asked for through `&self`; a
/// module's clone shares its tensors, so this costs no copy of the weights.
pub fn site_paths_under<T: SiteVisit + Clone>(part: &T, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    part.clone().visit_sites_at(prefix, &mut |path, _| out.push(path.to_string()));
    out
}

/// One site: the layer reports itself at the prefix.
macro_rules! leaf {
    ($($ty:ident => $variant:ident),* $(,)?) => {$(
        impl SiteVisit for $ty {
            fn visit_sites_at(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
                f(prefix, SiteMut::$variant(self));
            }
        }
    )*};
}

leaf!(
    AdaptedLinear => Linear,
    AdaptedEmbedding => Embedding,
    AdaptedConv1d => Conv1d,
    AdaptedConv2d => Conv2d,
    AdaptedBatchNorm2d => BatchNorm2d,
);

/// Items under their index, as Burn names `Vec` fields and transformers names `ModuleList`s.
impl<T: SiteVisit> SiteVisit for Vec<T> {
    fn visit_sites_at(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.as_mut_slice().visit_sites_at(prefix, f);
    }

    fn head_paths_at(&self, prefix: &str, out: &mut Vec<String>) {
        self.as_slice().head_paths_at(prefix, out);
    }
}

/// Items under their index, as for `Vec`.
impl<T: SiteVisit, const N: usize> SiteVisit for [T; N] {
    fn visit_sites_at(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.as_mut_slice().visit_sites_at(prefix, f);
    }

    fn head_paths_at(&self, prefix: &str, out: &mut Vec<String>) {
        self.as_slice().head_paths_at(prefix, out);
    }
}

/// Items under their index (what `Vec` and arrays delegate to).
impl<T: SiteVisit> SiteVisit for [T] {
    fn visit_sites_at(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        for (i, item) in self.iter_mut().enumerate() {
            item.visit_sites_at(&join_path(prefix, &i.to_string()), f);
        }
    }

    fn head_paths_at(&self, prefix: &str, out: &mut Vec<String>) {
        for (i, item) in self.iter().enumerate() {
            item.head_paths_at(&join_path(prefix, &i.to_string()), out);
        }
    }
}

/// The content's sites at the same prefix (transformers has no `Option` level), or none.
impl<T: SiteVisit> SiteVisit for Option<T> {
    fn visit_sites_at(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        if let Some(inner) = self {
            inner.visit_sites_at(prefix, f);
        }
    }

    fn head_paths_at(&self, prefix: &str, out: &mut Vec<String>) {
        if let Some(inner) = self {
            inner.head_paths_at(prefix, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::SiteKind;
    use burn::tensor::Device;

    fn listed<T: SiteVisit>(part: &mut T, prefix: &str) -> Vec<(String, SiteKind)> {
        let mut out = Vec::new();
        part.visit_sites_at(prefix, &mut |p, s| out.push((p.to_string(), s.kind())));
        out
    }

    #[test]
    fn leaves_report_themselves_at_the_prefix() {
        let device = Device::default();
        assert_eq!(listed(&mut AdaptedLinear::new(2, 3, false, &device), "fc"), [("fc".to_string(), SiteKind::Linear)]);
        assert_eq!(listed(&mut AdaptedEmbedding::new(5, 3, &device), "wte"), [("wte".to_string(), SiteKind::Embedding)]);
        assert_eq!(listed(&mut AdaptedBatchNorm2d::from_batch_norm(crate::adapted::BatchNorm2d::new(3, &device)), "bn"), [("bn".to_string(), SiteKind::BatchNorm2d)]);
    }

    #[test]
    fn containers_add_index_segments_or_nothing() {
        let device = Device::default();
        let lin = || AdaptedLinear::new(2, 2, false, &device);
        let mut nested = vec![vec![lin()], vec![lin(), lin()]];
        let paths: Vec<String> = listed(&mut nested, "h").into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["h.0.0", "h.1.0", "h.1.1"]);
        let mut array = [lin(), lin()];
        assert_eq!(listed(&mut array, "").into_iter().map(|(p, _)| p).collect::<Vec<_>>(), ["0", "1"]);
        assert_eq!(listed(&mut Some(lin()), "pooler.dense").len(), 1);
        assert!(listed(&mut None::<AdaptedLinear>, "pooler.dense").is_empty());
        assert_eq!(site_paths_under(&nested, "h"), ["h.0.0", "h.1.0", "h.1.1"]);
    }
}
