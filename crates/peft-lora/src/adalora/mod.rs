//! AdaLoRA (Zhang et al. 2023, arXiv 2303.10512): LoRA in SVD form whose ranks are pruned during
//! training, as the Python library's `AdaLoraModel`.
//!
//! - [`AdaLoraLinear`]: the layer, `h = W0 x + (dropout(x) (A ⊙ E)ᵀ Bᵀ) * lora_alpha / (ranknum + 1e-5)`.
//! - [`AdaLoraConv2d`]: the same on a 2-D convolution (`A: [r, c_in * kh * kw]`), the Python
//!   library's `SVDConv2d`.
//! - [`AdaLoraMethod`]: which sites, and the adapter at each (fresh at `init_r`, or from a file
//!   with the ranks its `rank_pattern` kept).
//! - [`update_and_allocate`] / [`budget_schedule`]: the rank allocator.
//! - [`orth_regularization`]: the orthogonality penalty added to the training loss.

mod allocator;
mod conv;
mod layer;
mod orth;
mod svd;

pub use allocator::{Allocation, apply_rank_pattern, budget_schedule, rank_pattern_key, update_and_allocate};
pub use conv::{AdaLoraConv2d, ConvGeometry};
pub use layer::AdaLoraLinear;
pub use orth::orth_regularization;
pub use svd::factor_ids;

use peft_core::attach::{AdapterTensors, SiteAdapter, SiteInfo, SiteMethod, TargetRule, attach, file_tensor};
use peft_core::{AdaLoraConfig, AdapterSites, Error, InitLoraWeights, Result, SiteMut};

/// AdaLoRA as a [`peft_core::attach::SiteMethod`]: the config's target rule, and an
/// [`AdaLoraLinear`] per selected linear site or an [`AdaLoraConv2d`] per selected 2-D
/// convolution.
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
        let config = self.config;
        let init_r = config.init_r;
        let dropout = config.lora_dropout;
        // Python: `scaling = lora_alpha if lora_alpha > 0 else r`, `r` the rank the layer was
        // (re)built with; `ranknum` stays `init_r` through a resize.
        let scaling_for = |r: usize| if config.lora_alpha > 0.0 { config.lora_alpha } else { r as f64 };
        let init = !matches!(config.init_lora_weights, InitLoraWeights::Random);
        // The ranks in the file, and the factors read with the shapes `[r, d_in]`, `[r, 1]`, `[d_out, r]`.
        let r = self.saved_rank(path);
        let ranknum = if r == init_r || r == 0 { r as f64 } else { init_r as f64 };
        let read = |tensors: &AdapterTensors, d_in: usize, d_out: usize| -> Result<_> {
            let (a, a_key) = file_tensor(tensors, path, "lora_A", &[r, d_in], FIX)?;
            let (e, e_key) = file_tensor(tensors, path, "lora_E", &[r, 1], FIX)?;
            let (b, b_key) = file_tensor(tensors, path, "lora_B", &[d_out, r], FIX)?;
            Ok(([a, e, b], vec![a_key, e_key, b_key]))
        };
        match site {
            SiteMut::Linear(site) => {
                let [d_in, d_out] = site.dims();
                let device = site.base_layer.weight.lazy_device();
                let Some(tensors) = tensors else {
                    let layer = AdaLoraLinear::init(d_in, d_out, init_r, scaling_for(init_r), dropout, init, &device);
                    return Ok((SiteAdapter::linear(layer), Vec::new()));
                };
                let ([a, e, b], keys) = read(tensors, d_in, d_out)?;
                let layer = AdaLoraLinear::from_torch(a, e, b, scaling_for(r), ranknum, dropout, &device);
                Ok((SiteAdapter::linear(layer), keys))
            }
            SiteMut::Conv2d(site) => {
                let base = &site.base_layer;
                if base.groups != 1 {
                    return Err(Error::Unsupported {
                        what: format!("AdaLoRA on the grouped convolution `{path}` (groups = {})", base.groups),
                        supported: "convolutions with groups = 1 (the Python library's SVDConv2d fails on grouped ones too)".into(),
                    });
                }
                let device = base.weight.lazy_device();
                let Some(tensors) = tensors else {
                    let layer = AdaLoraConv2d::init(base, init_r, scaling_for(init_r), dropout, init, &device)?;
                    return Ok((SiteAdapter::conv2d(layer), Vec::new()));
                };
                let geometry = ConvGeometry::of(base)?;
                let c_out = base.weight.lazy_shape().dims::<4>()[0];
                let ([a, e, b], keys) = read(tensors, geometry.d_input(), c_out)?;
                let [a, e, b] = [a, e, b].map(|t| burn::tensor::Tensor::from_data(t, &device));
                let layer = AdaLoraConv2d::new(geometry, a, e, b, scaling_for(r), ranknum, dropout);
                Ok((SiteAdapter::conv2d(layer), keys))
            }
            other => Err(Error::Unsupported {
                what: format!("AdaLoRA on the {:?} layer `{path}`", other.kind()),
                supported: "linear layers (nn.Linear and GPT-2's Conv1D) and 2-D convolutions, as the Python library".into(),
            }),
        }
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
