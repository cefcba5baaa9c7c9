//! Attaching LoRA adapters to the sites a config targets.

use peft_core::adapted::precision::to_adapter_dtype;
use peft_core::attach::{SiteAdapter, SiteInfo, SiteMethod, TargetRule, attach, file_tensor, remove_adapter};
use peft_core::{AdapterSites, Error, LoraConfig, Result, SiteMut};

use crate::decompose::{check_rank, unsupported_on};
use crate::init::factors;
use crate::dora::{DoraConv1d, DoraConv2d, DoraEmbedding, DoraLinear};
use crate::{LoraConv1d, LoraConv2d, LoraEmbedding, LoraLinear};

pub use peft_core::attach::AdapterTensors;

/// What [`inject`] did.
pub type Injection = peft_core::attach::Attached;

/// LoRA as a [`SiteMethod`]: the config's target rule, and a LoRA adapter per selected site.
pub struct LoraMethod<'a> {
    config: &'a LoraConfig,
    modules_to_save: Vec<String>,
}

impl<'a> LoraMethod<'a> {
    /// The method for `config` (checked with [`LoraConfig::validate`]).
    pub fn new(config: &'a LoraConfig) -> Result<Self> {
        config.validate()?;
        Ok(LoraMethod { config, modules_to_save: config.common.modules_to_save.clone().unwrap_or_default() })
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
}

impl SiteMethod for LoraMethod<'_> {
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

/// Attaches a LoRA adapter named `name` to every site `config` targets.
///
/// With `tensors`, the factors come from an adapter file (every shape is checked against the
/// model first); without, they are initialised as `init_lora_weights` says. Nothing is attached
/// unless every site succeeds, so on error the model is unchanged. PiSSA and OLoRA then split the
/// base weights ([`crate::decompose_bases`]).
pub fn inject<M: AdapterSites>(
    model: &mut M,
    config: &LoraConfig,
    name: &str,
    tensors: Option<&AdapterTensors>,
) -> Result<Injection> {
    let injection = attach(model, name, &LoraMethod::new(config)?, tensors)?;
    if let Err(e) = crate::decompose_bases(model, name, config, tensors.is_none()) {
        remove_adapter(model, name);
        return Err(e);
    }
    Ok(injection)
}

const FIX: &str = "the adapter file does not fit this config: check target_modules and the base model";

fn plan_site(
    site: SiteMut<'_>,
    path: &str,
    config: &LoraConfig,
    tensors: Option<&AdapterTensors>,
) -> Result<(SiteAdapter, Vec<String>)> {
    let r = config.rank_for(path);
    let scaling = config.scaling_for(path);
    let dropout = config.lora_dropout;
    let dora = config.use_dora;
    match site {
        SiteMut::Linear(site) => {
            let [d_in, d_out] = site.dims();
            check_rank(&config.init_lora_weights, path, r, [d_in, d_out])?;
            let device = site.base_layer.weight.lazy_device();
            let (lora, mut keys) = match tensors {
                Some(t) => {
                    let (a, b, keys) = pair(t, path, "lora_A.weight", [r, d_in], "lora_B.weight", [d_out, r])?;
                    (LoraLinear::from_torch(a, b, scaling, dropout, &device), keys)
                }
                None => {
                    let (a, b) = factors(&config.init_lora_weights, r, ([d_in, r], d_in), ([r, d_out], r), &device);
                    (LoraLinear::new(a, b, scaling, dropout), Vec::new())
                }
            };
            if !dora {
                return Ok((SiteAdapter::linear(lora), keys));
            }
            let adapter = match magnitude(tensors, path, &[d_out], &device, &mut keys)? {
                Some(m) => DoraLinear::new(lora, m),
                None => DoraLinear::initialised(lora, to_adapter_dtype(site.base_weight())),
            };
            Ok((SiteAdapter::linear(adapter), keys))
        }
        SiteMut::Embedding(site) => {
            let [n, d] = site.dims();
            let device = site.base_layer.weight.lazy_device();
            let (lora, mut keys) = match tensors {
                Some(t) => {
                    let (a, b, keys) = pair(t, path, "lora_embedding_A", [r, n], "lora_embedding_B", [d, r])?;
                    (LoraEmbedding::from_torch(a, b, scaling, &device), keys)
                }
                None => {
                    use burn::tensor::{Distribution, Tensor};
                    // As the Python library: A zero and B standard normal, so the table starts unchanged;
                    // with `init_lora_weights = false` both are standard normal.
                    let b = Tensor::random([r, d], Distribution::Normal(0.0, 1.0), &device);
                    let a = match config.init_lora_weights {
                        peft_core::InitLoraWeights::Random => Tensor::random([n, r], Distribution::Normal(0.0, 1.0), &device),
                        _ => Tensor::zeros([n, r], &device),
                    };
                    (LoraEmbedding::new(a, b, scaling), Vec::new())
                }
            };
            if !dora {
                return Ok((SiteAdapter::embedding(lora), keys));
            }
            let adapter = match magnitude(tensors, path, &[d], &device, &mut keys)? {
                Some(m) => DoraEmbedding::new(lora, m),
                None => DoraEmbedding::initialised(lora, to_adapter_dtype(site.base_layer.weight.val())),
            };
            Ok((SiteAdapter::embedding(adapter), keys))
        }
        SiteMut::Conv1d(site) => {
            unsupported_on(&config.init_lora_weights, path, "convolution")?;
            let base = &site.base_layer;
            let [c_out, c_in, k] = base.weight.lazy_shape().dims();
            let device = base.weight.lazy_device();
            let (lora, mut keys) = match tensors {
                Some(t) => {
                    let (a, b, keys) = pair(t, path, "lora_A.weight", [r, c_in, k], "lora_B.weight", [c_out, r, 1])?;
                    (LoraConv1d::from_torch(base, a, b, scaling, dropout, &device)?, keys)
                }
                None => {
                    let (a, b) = factors(&config.init_lora_weights, r, ([r, c_in, k], c_in * k), ([c_out, r, 1], r), &device);
                    (LoraConv1d::new(base, a, b, scaling, dropout)?, Vec::new())
                }
            };
            if !dora {
                return Ok((SiteAdapter::conv1d(lora), keys));
            }
            let adapter = match magnitude(tensors, path, &[1, c_out, 1], &device, &mut keys)? {
                Some(m) => DoraConv1d::new(lora, m),
                None => DoraConv1d::initialised(lora, to_adapter_dtype(base.weight.val())),
            };
            Ok((SiteAdapter::conv1d(adapter), keys))
        }
        SiteMut::Conv2d(site) => {
            unsupported_on(&config.init_lora_weights, path, "convolution")?;
            let base = &site.base_layer;
            let [c_out, c_in, kh, kw] = base.weight.lazy_shape().dims();
            let device = base.weight.lazy_device();
            let (lora, mut keys) = match tensors {
                Some(t) => {
                    let (a, b, keys) =
                        pair(t, path, "lora_A.weight", [r, c_in, kh, kw], "lora_B.weight", [c_out, r, 1, 1])?;
                    (LoraConv2d::from_torch(base, a, b, scaling, dropout, &device)?, keys)
                }
                None => {
                    let (a, b) =
                        factors(&config.init_lora_weights, r, ([r, c_in, kh, kw], c_in * kh * kw), ([c_out, r, 1, 1], r), &device);
                    (LoraConv2d::new(base, a, b, scaling, dropout)?, Vec::new())
                }
            };
            if !dora {
                return Ok((SiteAdapter::conv2d(lora), keys));
            }
            let adapter = match magnitude(tensors, path, &[1, c_out, 1, 1], &device, &mut keys)? {
                Some(m) => DoraConv2d::new(lora, m),
                None => DoraConv2d::initialised(lora, to_adapter_dtype(base.weight.val())),
            };
            Ok((SiteAdapter::conv2d(adapter), keys))
        }
        // As in the Python library, which has no LoRA layer for `nn.BatchNorm2d`.
        SiteMut::Attention(_) => Err(Error::Unsupported {
            what: format!("LoRA on the attention module `{path}` as a whole"),
            supported: "its linear projections (q_proj, k_proj, v_proj, o_proj)".into(),
        }),
        SiteMut::BatchNorm2d(_) => Err(Error::Unsupported {
            what: format!("LoRA on the batch norm layer `{path}`"),
            supported: "linear, embedding and convolution layers (list the module in modules_to_save to train it in full)".into(),
        }),
    }
}

/// DoRA's magnitude `{path}.lora_magnitude_vector` from the file (its file shape checked, held
/// flat), or `None` for a fresh adapter. A file without it is not a DoRA adapter: an error.
fn magnitude(
    tensors: Option<&AdapterTensors>,
    path: &str,
    file_shape: &[usize],
    device: &burn::tensor::Device,
    keys: &mut Vec<String>,
) -> Result<Option<burn::tensor::Tensor<1>>> {
    let Some(tensors) = tensors else { return Ok(None) };
    let fix = "the config says use_dora = true but the file lacks DoRA's magnitudes: save the adapter again, or set use_dora = false for a plain LoRA file";
    let (data, key) = file_tensor(tensors, path, crate::dora::MAGNITUDE_KEY, file_shape, fix)?;
    // Convolutions store it `[1, c_out, 1..]`; the adapter holds it flat.
    let n = data.num_elements();
    let values = data.convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::InvalidState(format!("`{key}`: {e:?}")))?;
    keys.push(key);
    Ok(Some(burn::tensor::Tensor::<1>::from_data(burn::tensor::TensorData::new(values, [n]), device)))
}

/// Looks up `{path}.{a}` and `{path}.{b}` and checks their shapes.
fn pair<const DA: usize, const DB: usize>(
    tensors: &AdapterTensors,
    path: &str,
    a: &str,
    a_shape: [usize; DA],
    b: &str,
    b_shape: [usize; DB],
) -> Result<(burn::tensor::TensorData, burn::tensor::TensorData, Vec<String>)> {
    let (a_data, a_key) = file_tensor(tensors, path, a, &a_shape, FIX)?;
    let (b_data, b_key) = file_tensor(tensors, path, b, &b_shape, FIX)?;
    Ok((a_data, b_data, vec![a_key, b_key]))
}
