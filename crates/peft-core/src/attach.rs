//! The one attach pipeline every method uses: select sites, plan an adapter for each, then
//! commit all of them or none.
//!
//! A method crate supplies a [`SiteMethod`]: which sites it adapts ([`SiteMethod::selects`],
//! usually a [`TargetRule`]) and what it builds at one site ([`SiteMethod::build`]). [`attach`]
//! walks the model twice: the first walk plans every selected site (reading tensors from a file
//! and checking their shapes, or initialising fresh weights) without changing anything; only
//! when every site succeeded does the second walk insert the planned adapters. So an error —
//! a missing tensor, a wrong shape, a site kind the method cannot adapt — leaves the model
//! exactly as it was.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use burn::module::{Module, Param};
//! use peft_core::attach::{attach, SiteAdapter, SiteInfo, SiteMethod, AdapterTensors};
//! use peft_core::{AdaptedLinear, AdapterSites, LinearAdapter, Result, SiteMut};
//!
//! /// A toy method: scales a linear layer's output by learned factors.
//! #[derive(Module, Debug)]
//! struct Scale { factors: Param<Tensor<1>> }
//!
//! impl LinearAdapter for Scale {
//!     fn adapt_output(&self, _x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
//!         y * self.factors.val().unsqueeze::<3>()
//!     }
//!     fn merge(&self, w: Tensor<2>, b: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
//!         Ok((w * self.factors.val().unsqueeze::<2>(), b.map(|b| b * self.factors.val())))
//!     }
//!     fn unmerge(&self, w: Tensor<2>, b: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
//!         Ok((w / self.factors.val().unsqueeze::<2>(), b.map(|b| b / self.factors.val())))
//!     }
//!     fn export(&self) -> Vec<(String, TensorData)> {
//!         vec![("scale".into(), self.factors.val().into_data())]
//!     }
//! }
//!
//! struct ScaleMethod;
//!
//! impl SiteMethod for ScaleMethod {
//!     fn selects(&self, site: &SiteInfo<'_>) -> bool {
//!         site.path.ends_with("fc")
//!     }
//!     fn build(&self, _path: &str, site: SiteMut<'_>, _t: Option<&AdapterTensors>) -> Result<(SiteAdapter, Vec<String>)> {
//!         let SiteMut::Linear(s) = site else { unreachable!("only linear sites are named fc") };
//!         let ones = Tensor::<1>::ones([s.dims()[1]], &s.base_layer.weight.lazy_device());
//!         Ok((SiteAdapter::linear(Scale { factors: Param::from_tensor(ones) }), Vec::new()))
//!     }
//! }
//!
//! #[derive(Module, Debug)]
//! struct Tiny { fc: AdaptedLinear }
//! impl AdapterSites for Tiny {
//!     fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
//!         f("fc", SiteMut::Linear(&mut self.fc));
//!     }
//! }
//!
//! let device = Device::default();
//! let mut model = Tiny { fc: AdaptedLinear::new(4, 3, true, &device) };
//! let done = attach(&mut model, "default", &ScaleMethod, None).expect("attaches");
//! assert_eq!(done.targeted, ["fc"]);
//! assert!(model.fc.adapters.get("default").is_some());
//! ```

use burn::module::Module;
use burn::tensor::TensorData;
use indexmap::IndexMap;

use crate::adapted::Erased;

use crate::adapted::check_name;
use crate::targets::{LayerIndices, LayersPattern, TargetModules, closest_names, layer_selected};
use crate::{
    AdapterSites, AttentionAdapter, BatchNormAdapter, Conv1dAdapter, Conv2dAdapter, EmbeddingAdapter, Error, LinearAdapter, Result, SiteKind, SiteMut,
    module_covers,
};

/// An adapter file's tensors keyed by module path and suffix
/// (`model.layers.0.self_attn.q_proj.lora_A.weight`), without the `base_model.model.` prefix.
pub type AdapterTensors = IndexMap<String, TensorData>;

/// What a method built for one site, ready to insert.
pub enum SiteAdapter {
    /// For a linear layer.
    Linear(Erased<dyn LinearAdapter>),
    /// For an embedding table.
    Embedding(Erased<dyn EmbeddingAdapter>),
    /// For a 1-D convolution.
    Conv1d(Erased<dyn Conv1dAdapter>),
    /// For a 2-D convolution.
    Conv2d(Erased<dyn Conv2dAdapter>),
    /// For a batch norm layer.
    BatchNorm2d(Erased<dyn BatchNormAdapter>),
    /// For a self-attention module's output.
    Attention(Erased<dyn AttentionAdapter>),
}

impl SiteAdapter {
    /// A linear layer's adapter.
    pub fn linear<A: LinearAdapter + Module>(adapter: A) -> Self {
        SiteAdapter::Linear(Erased::new(adapter))
    }

    /// An embedding table's adapter.
    pub fn embedding<A: EmbeddingAdapter + Module>(adapter: A) -> Self {
        SiteAdapter::Embedding(Erased::new(adapter))
    }

    /// A 1-D convolution's adapter.
    pub fn conv1d<A: Conv1dAdapter + Module>(adapter: A) -> Self {
        SiteAdapter::Conv1d(Erased::new(adapter))
    }

    /// A 2-D convolution's adapter.
    pub fn conv2d<A: Conv2dAdapter + Module>(adapter: A) -> Self {
        SiteAdapter::Conv2d(Erased::new(adapter))
    }

    /// A batch norm layer's adapter.
    pub fn batch_norm<A: BatchNormAdapter + Module>(adapter: A) -> Self {
        SiteAdapter::BatchNorm2d(Erased::new(adapter))
    }

    /// A self-attention module's adapter.
    pub fn attention<A: AttentionAdapter + Module>(adapter: A) -> Self {
        SiteAdapter::Attention(Erased::new(adapter))
    }

    fn kind(&self) -> SiteKind {
        match self {
            SiteAdapter::Linear(_) => SiteKind::Linear,
            SiteAdapter::Embedding(_) => SiteKind::Embedding,
            SiteAdapter::Conv1d(_) => SiteKind::Conv1d,
            SiteAdapter::Conv2d(_) => SiteKind::Conv2d,
            SiteAdapter::BatchNorm2d(_) => SiteKind::BatchNorm2d,
            SiteAdapter::Attention(_) => SiteKind::Attention,
        }
    }

    /// Inserts the adapter at `site` under `name`.
    fn insert_into(self, site: SiteMut<'_>, name: &str, path: &str) -> Result<()> {
        match (site, self) {
            (SiteMut::Linear(s), SiteAdapter::Linear(a)) => s.adapters.insert(name, a),
            (SiteMut::Embedding(s), SiteAdapter::Embedding(a)) => s.adapters.insert(name, a),
            (SiteMut::Conv1d(s), SiteAdapter::Conv1d(a)) => s.adapters.insert(name, a),
            (SiteMut::Conv2d(s), SiteAdapter::Conv2d(a)) => s.adapters.insert(name, a),
            (SiteMut::BatchNorm2d(s), SiteAdapter::BatchNorm2d(a)) => s.adapters.insert(name, a),
            (SiteMut::Attention(s), SiteAdapter::Attention(a)) => s.adapters.insert(name, a),
            (site, planned) => Err(Error::InvalidState(format!(
                "the method built a {:?} adapter for `{path}`, which is a {:?} site",
                planned.kind(),
                site.kind()
            ))),
        }
    }
}

/// A site as a method sees it when deciding whether to adapt it.
#[derive(Clone, Copy, Debug)]
pub struct SiteInfo<'a> {
    /// The module path (`model.layers.0.self_attn.q_proj`).
    pub path: &'a str,
    /// The layer kind.
    pub kind: SiteKind,
    /// Whether the site is one of the model's output heads (`lm_head`), which `all-linear` skips.
    pub is_output_head: bool,
}

/// A method's part of [`attach`].
pub trait SiteMethod {
    /// Whether the method adapts this site.
    fn selects(&self, site: &SiteInfo<'_>) -> bool;

    /// Builds the adapter for one selected site: from `tensors` (an adapter file, keys as in
    /// [`AdapterTensors`]) when given, checking every shape, else freshly initialised. Returns the
    /// adapter and the file keys it used. Must not change the site.
    fn build(&self, path: &str, site: SiteMut<'_>, tensors: Option<&AdapterTensors>) -> Result<(SiteAdapter, Vec<String>)>;

    /// The error when no site was selected; `paths` lists every site of the model.
    fn nothing_selected(&self, paths: &[String]) -> Error {
        Error::TargetModulesNotFound { targets: "(this method's targets)".into(), closest: closest_names(&[], paths.iter().map(String::as_str), 8) }
    }
}

/// What [`attach`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attached {
    /// Paths of the sites that received an adapter, in model order.
    pub targeted: Vec<String>,
    /// Keys of the given tensors that were used.
    pub consumed: Vec<String>,
}

/// Attaches `method`'s adapter named `name` to every site it selects, or to none.
///
/// # Errors
/// An invalid or already used `name`; [`SiteMethod::nothing_selected`] when no site is selected;
/// the first error of [`SiteMethod::build`]. The model is unchanged on every error.
pub fn attach<M: AdapterSites>(
    model: &mut M,
    name: &str,
    method: &dyn SiteMethod,
    tensors: Option<&AdapterTensors>,
) -> Result<Attached> {
    check_name(name)?;
    let heads = model.output_head_paths();
    let mut plan: Vec<(String, SiteAdapter)> = Vec::new();
    let mut consumed = Vec::new();
    let mut all_paths = Vec::new();
    let mut first_error: Option<Error> = None;
    model.visit_sites_mut(&mut |path, site| {
        all_paths.push(path.to_string());
        if first_error.is_some() {
            return;
        }
        let info = SiteInfo { path, kind: site.kind(), is_output_head: heads.iter().any(|h| h == path) };
        if !method.selects(&info) {
            return;
        }
        if site.holds(name) {
            first_error = Some(Error::InvalidAdapterName { name: name.into(), reason: "is already used by this model" });
            return;
        }
        match method.build(path, site, tensors) {
            Ok((adapter, keys)) => {
                plan.push((path.to_string(), adapter));
                consumed.extend(keys);
            }
            Err(e) => first_error = Some(e),
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    if plan.is_empty() {
        return Err(method.nothing_selected(&all_paths));
    }
    let targeted: Vec<String> = plan.iter().map(|(p, _)| p.clone()).collect();
    commit(model, name, plan)?;
    Ok(Attached { targeted, consumed })
}

/// Inserts planned adapters (the second walk of [`attach`]); used directly by operations that
/// plan from existing adapters rather than from a method (weighted combination).
///
/// If an insertion fails — only possible when a model's `visit_sites_mut` is not deterministic —
/// what was inserted is removed again and the error returned.
pub fn commit<M: AdapterSites>(model: &mut M, name: &str, plan: Vec<(String, SiteAdapter)>) -> Result<()> {
    let mut by_path: IndexMap<String, SiteAdapter> = plan.into_iter().collect();
    let mut error: Option<Error> = None;
    model.visit_sites_mut(&mut |path, site| {
        let Some(adapter) = by_path.shift_remove(path) else { return };
        if error.is_none()
            && let Err(e) = adapter.insert_into(site, name, path)
        {
            error = Some(e);
        }
    });
    if error.is_none()
        && let Some((path, _)) = by_path.first()
    {
        error = Some(Error::InvalidState(format!("site `{path}` disappeared between two walks of the model")));
    }
    match error {
        None => Ok(()),
        Some(e) => {
            remove_adapter(model, name);
            Err(e)
        }
    }
}

/// Removes adapter `name` from every site; returns the paths it was at.
pub fn remove_adapter<M: AdapterSites>(model: &mut M, name: &str) -> Vec<String> {
    let mut removed = Vec::new();
    model.visit_sites_mut(&mut |path, mut site| {
        if site.remove_adapter(name) {
            removed.push(path.to_string());
        }
    });
    removed
}

/// The target rule most layer methods share: `target_modules` minus `exclude_modules`, limited
/// by `layers_to_transform` / `layers_pattern`, never inside a `modules_to_save` module (which
/// is trained in full instead, as the Python library does).
#[derive(Clone, Debug)]
pub struct TargetRule<'a> {
    /// The modules to adapt.
    pub target_modules: &'a TargetModules,
    /// Modules never to adapt.
    pub exclude_modules: &'a TargetModules,
    /// Only layers with these indices.
    pub layers_to_transform: &'a LayerIndices,
    /// The name of the layer list the indices refer to.
    pub layers_pattern: &'a LayersPattern,
    /// Modules trained in full.
    pub modules_to_save: &'a [String],
}

impl TargetRule<'_> {
    /// Whether the rule selects `site`.
    pub fn selects(&self, site: &SiteInfo<'_>) -> bool {
        self.target_modules.matches_site(site.path, site.kind == SiteKind::Linear, site.is_output_head)
            && !self.exclude_modules.matches(site.path)
            && layer_selected(site.path, self.layers_to_transform, self.layers_pattern)
            && !self.modules_to_save.iter().any(|s| module_covers(s, site.path))
    }

    /// The "did you mean" error for targets that matched nothing.
    pub fn not_found(&self, paths: &[String]) -> Error {
        let wanted: Vec<String> = match self.target_modules {
            TargetModules::Names(n) => n.clone(),
            TargetModules::Regex(r) => vec![r.clone()],
            _ => Vec::new(),
        };
        Error::TargetModulesNotFound {
            targets: self.target_modules.describe(),
            closest: closest_names(&wanted, paths.iter().map(String::as_str), 8),
        }
    }
}

/// Looks up `key` in an adapter file's tensors and checks its shape; `path` and `suffix` name
/// the site and tensor in errors.
///
/// # Errors
/// [`Error::MissingTensor`] with `fix`, [`Error::WrongDtype`] for integer or boolean data,
/// [`Error::ShapeMismatch`] with both shapes.
pub fn file_tensor(tensors: &AdapterTensors, path: &str, suffix: &str, shape: &[usize], fix: &str) -> Result<(TensorData, String)> {
    let key = format!("{path}.{suffix}");
    let data = tensors.get(&key).ok_or_else(|| Error::MissingTensor {
        key: key.clone(),
        file: "adapter_model.safetensors".into(),
        fix: fix.to_string(),
    })?;
    if !data.dtype().is_float() {
        return Err(Error::WrongDtype { key, found: format!("{:?}", data.dtype()) });
    }
    if data.shape().as_slice() != shape {
        return Err(Error::ShapeMismatch {
            path: path.to_string(),
            tensor: suffix.to_string(),
            expected: shape.to_vec(),
            actual: data.shape().to_vec(),
        });
    }
    Ok((data.clone(), key))
}
