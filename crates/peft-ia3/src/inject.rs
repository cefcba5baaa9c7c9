//! Attaching (IA)³ vectors to the sites a config targets.

use burn::tensor::{Distribution, Tensor};
use peft_core::attach::{AdapterTensors, SiteAdapter, SiteInfo, SiteMethod, TargetRule, attach, file_tensor};
use peft_core::{AdapterSites, Error, Ia3Config, LayerIndices, LayersPattern, Result, SiteMut};

use crate::{Ia3Conv2d, Ia3Linear};

/// What [`inject`] did.
pub type Injection = peft_core::attach::Attached;

/// (IA)³ as a [`SiteMethod`]: the config's target rule, and a scaling vector per selected site
/// (on the input of `feedforward_modules`, on the output elsewhere).
pub struct Ia3Method<'a> {
    config: &'a Ia3Config,
    modules_to_save: Vec<String>,
    // (IA)³ has no layer selection by index: these stay "every layer".
    layers: LayerIndices,
    pattern: LayersPattern,
}

impl<'a> Ia3Method<'a> {
    /// The method for `config`, whose unset `target_modules` / `feedforward_modules` must have
    /// been filled (see [`Ia3Config::complete_for`]).
    ///
    /// Only the patterns are checked here, not [`Ia3Config::validate`]'s subset rule: as in the
    /// Python library, defaults filled in for `feedforward_modules` (`down_proj` on a Llama) need
    /// not be among explicitly given targets (they then scale nothing).
    pub fn new(config: &'a Ia3Config) -> Result<Self> {
        config.target_modules.validate("target_modules")?;
        config.exclude_modules.validate("exclude_modules")?;
        config.feedforward_modules.validate("feedforward_modules")?;
        if config.target_modules.is_none() {
            return Err(Error::config("target_modules", "null", "name the layers to adapt (or let get_peft_model fill the architecture's defaults)"));
        }
        Ok(Ia3Method {
            config,
            modules_to_save: config.common.modules_to_save.clone().unwrap_or_default(),
            layers: LayerIndices::default(),
            pattern: LayersPattern::default(),
        })
    }

    fn rule(&self) -> TargetRule<'_> {
        TargetRule {
            target_modules: &self.config.target_modules,
            exclude_modules: &self.config.exclude_modules,
            layers_to_transform: &self.layers,
            layers_pattern: &self.pattern,
            modules_to_save: &self.modules_to_save,
        }
    }
}

impl SiteMethod for Ia3Method<'_> {
    fn selects(&self, site: &SiteInfo<'_>) -> bool {
        self.rule().selects(site)
    }

    fn build(&self, path: &str, site: SiteMut<'_>, tensors: Option<&AdapterTensors>) -> Result<(SiteAdapter, Vec<String>)> {
        plan_site(site, path, self.config, tensors)
    }

    fn nothing_selected(&self, paths: &[String]) -> Error {
        self.rule().not_found(paths)
    }
}

/// Attaches an (IA)³ adapter named `name` to every site `config` targets: from an adapter file's
/// `tensors` (every shape checked first), or fresh (ones, or `N(0, 1)` with
/// `init_ia3_weights = false`). Nothing is attached unless every site succeeds.
pub fn inject<M: AdapterSites>(model: &mut M, config: &Ia3Config, name: &str, tensors: Option<&AdapterTensors>) -> Result<Injection> {
    attach(model, name, &Ia3Method::new(config)?, tensors)
}

const FIX: &str = "the adapter file does not fit this config: check target_modules, feedforward_modules and the base model";

/// The suffix of the vector in adapter files.
pub const IA3_KEY: &str = "ia3_l";

fn plan_site(site: SiteMut<'_>, path: &str, config: &Ia3Config, tensors: Option<&AdapterTensors>) -> Result<(SiteAdapter, Vec<String>)> {
    let feedforward = config.is_feedforward(path);
    match site {
        SiteMut::Linear(site) => {
            let dims = site.dims();
            let device = site.base_layer.weight.lazy_device();
            let shape = Ia3Linear::torch_shape(dims, feedforward);
            if let Some(t) = tensors {
                let (data, key) = file_tensor(t, path, IA3_KEY, &shape, FIX)?;
                return Ok((SiteAdapter::linear(Ia3Linear::from_torch(data, feedforward, &device)), vec![key]));
            }
            let len = shape[0] * shape[1];
            Ok((SiteAdapter::linear(Ia3Linear::new(fresh(config, len, &device), feedforward)), Vec::new()))
        }
        SiteMut::Conv2d(site) => {
            let base = &site.base_layer;
            let [c_out, c_in_per_group, _, _] = base.weight.lazy_shape().dims();
            let device = base.weight.lazy_device();
            let len = if feedforward { c_in_per_group * base.groups } else { c_out };
            if let Some(t) = tensors {
                let (data, key) = file_tensor(t, path, IA3_KEY, &[1, len, 1, 1], FIX)?;
                return Ok((SiteAdapter::conv2d(Ia3Conv2d::from_torch(data, feedforward, base.groups, &device)), vec![key]));
            }
            Ok((SiteAdapter::conv2d(Ia3Conv2d::new(fresh(config, len, &device), feedforward, base.groups)), Vec::new()))
        }
        // The Python library adapts `nn.Linear`, `Conv1D`, `nn.Conv2d` and `nn.Conv3d` only.
        other => Err(Error::Unsupported {
            what: format!("IA3 on the {:?} layer `{path}`", other.kind()),
            supported: "linear layers (GPT-2's Conv1D included) and 2-D convolutions, as in the Python library".into(),
        }),
    }
}

/// A fresh vector: ones (the adapter starts as the identity) or, with `init_ia3_weights = false`,
/// standard normal as the Python library draws it.
fn fresh(config: &Ia3Config, len: usize, device: &burn::tensor::Device) -> Tensor<1> {
    if config.init_ia3_weights { Tensor::ones([len], device) } else { Tensor::random([len], Distribution::Normal(0.0, 1.0), device) }
}
