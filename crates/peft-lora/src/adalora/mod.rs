//! AdaLoRA (Zhang et al. 2023, arXiv 2303.10512): LoRA in SVD form whose ranks are pruned during
//! training, as the Python library's `AdaLoraModel`.
//!
//! - [`AdaLoraLinear`]: the layer, `h = W0 x + (dropout(x) (A ⊙ E)ᵀ Bᵀ) * lora_alpha / (ranknum + 1e-5)`.
//! - [`AdaLoraMethod`]: which sites, and the adapter at each (fresh at `init_r`, or from a file
//!   with the ranks its `rank_pattern` kept).
//! - [`update_and_allocate`] / [`budget_schedule`]: the rank allocator.
//! - [`orth_regularization`]: the orthogonality penalty added to the training loss.

mod allocator;
mod layer;
mod orth;

pub use allocator::{Allocation, apply_rank_pattern, budget_schedule, rank_pattern_key, update_and_allocate};
pub use layer::AdaLoraLinear;
pub use orth::orth_regularization;

use peft_core::attach::{AdapterTensors, SiteAdapter, SiteInfo, SiteMethod, TargetRule, attach, file_tensor};
use peft_core::{AdaLoraConfig, AdapterSites, Error, InitLoraWeights, Result, SiteMut};

/// AdaLoRA as a [`peft_core::attach::SiteMethod`]: the config's target rule, and an
/// [`AdaLoraLinear`] per selected linear site.
pub struct AdaLoraMethod<'a> {
    config: &'a AdaLoraConfig,
    modules_to_save: Vec<String>,
}

impl<'a> AdaLoraMethod<'a> {
    /// The method for `config` (checked with [`AdaLoraConfig::validate`]).
    pub fn new(config: &'a AdaLoraConfig) -> Result<Self> {
        config.validate()?;
        Ok(AdaLoraMethod { config, modules_to_save: config.common.modules_to_save.clone().unwrap_or_default() })
    }

    fn rule(&self) -> TargetRule<'_> {
        TargetRule {
            target_modules: &self.config.target_modules,
            exclude_modules: &self.config.exclude_modules,
            layers_to_transform: &self.config.layers_to_transform,
            layers_pattern: &self.config.layers_pattern,
            modules_to_save: &self.modules_to_save,
        }
    }

    /// The ranks a file holds for the layer at `path`: those its `rank_pattern` entry keeps, or
    /// `init_r` when it has none (the Python library resizes only the layers listed).
    fn saved_rank(&self, path: &str) -> usize {
        self.config
            .rank_pattern
            .as_ref()
            .and_then(|p| p.get(&rank_pattern_key(path)))
            .map_or(self.config.init_r, |kept| kept.iter().filter(|k| **k).count())
    }
}

const FIX: &str = "the adapter file does not fit this config: check target_modules, rank_pattern and the base model";

impl SiteMethod for AdaLoraMethod<'_> {
    fn selects(&self, site: &SiteInfo<'_>) -> bool {
        self.rule().selects(site)
    }

    fn build(&self, path: &str, site: SiteMut<'_>, tensors: Option<&AdapterTensors>) -> Result<(SiteAdapter, Vec<String>)> {
        let SiteMut::Linear(site) = site else {
            return Err(Error::Unsupported {
                what: format!("AdaLoRA on the {:?} layer `{path}`", site.kind()),
                supported: "linear layers (nn.Linear and GPT-2's Conv1D), as the Python library (its Conv2d form is not built here yet)".into(),
            });
        };
        let config = self.config;
        let [d_in, d_out] = site.dims();
        let device = site.base_layer.weight.lazy_device();
        let init_r = config.init_r;
        let dropout = config.lora_dropout;
        // Python: `scaling = lora_alpha if lora_alpha > 0 else r`, `r` the rank the layer was
        // (re)built with; `ranknum` stays `init_r` through a resize.
        let scaling_for = |r: usize| if config.lora_alpha > 0.0 { config.lora_alpha } else { r as f64 };
        let Some(tensors) = tensors else {
            let init = !matches!(config.init_lora_weights, InitLoraWeights::Random);
            let layer = AdaLoraLinear::init(d_in, d_out, init_r, scaling_for(init_r), dropout, init, &device);
            return Ok((SiteAdapter::linear(layer), Vec::new()));
        };
        let r = self.saved_rank(path);
        let (a, a_key) = file_tensor(tensors, path, "lora_A", &[r, d_in], FIX)?;
        let (e, e_key) = file_tensor(tensors, path, "lora_E", &[r, 1], FIX)?;
        let (b, b_key) = file_tensor(tensors, path, "lora_B", &[d_out, r], FIX)?;
        let ranknum = if r == init_r || r == 0 { r as f64 } else { init_r as f64 };
        let layer = AdaLoraLinear::from_torch(a, e, b, scaling_for(r), ranknum, dropout, &device);
        Ok((SiteAdapter::linear(layer), vec![a_key, e_key, b_key]))
    }

    fn nothing_selected(&self, paths: &[String]) -> Error {
        self.rule().not_found(paths)
    }
}

/// Attaches an AdaLoRA adapter named `name` to every site `config` targets (from `tensors` when
/// given); nothing is attached unless every site succeeds.
pub fn inject<M: AdapterSites>(model: &mut M, config: &AdaLoraConfig, name: &str, tensors: Option<&AdapterTensors>) -> Result<peft_core::attach::Attached> {
    attach(model, name, &AdaLoraMethod::new(config)?, tensors)
}
