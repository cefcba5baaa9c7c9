//! Attaching LoRA adapters to the sites a config targets.

use burn::tensor::TensorData;
use indexmap::IndexMap;
use peft_core::adapted::check_name;
use peft_core::targets::closest_names;
use peft_core::{
    AdapterSites, Conv1dAdapter, Conv2dAdapter, EmbeddingAdapter, Error, LinearAdapter, LoraConfig, Result, SiteMut,
    TargetModules, module_covers,
};
use std::collections::HashMap;

use crate::init::factors;
use crate::{LoraConv1d, LoraConv2d, LoraEmbedding, LoraLinear};

/// An adapter file's tensors keyed by module path and suffix
/// (`model.layers.0.self_attn.q_proj.lora_A.weight`), without the `base_model.model.` prefix.
pub type AdapterTensors = IndexMap<String, TensorData>;

/// What [`inject`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Injection {
    /// Paths of the sites that received an adapter, in model order.
    pub targeted: Vec<String>,
    /// Keys of the given tensors that were used.
    pub consumed: Vec<String>,
}

enum Planned {
    Linear(Box<dyn LinearAdapter>),
    Embedding(Box<dyn EmbeddingAdapter>),
    Conv1d(Box<dyn Conv1dAdapter>),
    Conv2d(Box<dyn Conv2dAdapter>),
}

/// Attaches a LoRA adapter named `name` to every site `config` targets.
///
/// With `tensors`, the factors come from an adapter file (every shape is checked against the
/// model first); without, they are initialised as `init_lora_weights` says. Nothing is attached
/// unless every site succeeds, so on error the model is unchanged.
pub fn inject<M: AdapterSites>(
    model: &mut M,
    config: &LoraConfig,
    name: &str,
    tensors: Option<&AdapterTensors>,
) -> Result<Injection> {
    config.validate()?;
    check_name(name)?;
    let heads = model.output_head_paths();
    let saved: Vec<String> = config.modules_to_save.clone().unwrap_or_default();
    let mut plan: Vec<(String, Planned)> = Vec::new();
    let mut consumed = Vec::new();
    let mut all_paths = Vec::new();
    let mut first_error: Option<Error> = None;
    model.visit_sites_mut(&mut |path, site| {
        all_paths.push(path.to_string());
        if first_error.is_some() {
            return;
        }
        let is_linear = matches!(site, SiteMut::Linear(_));
        let is_head = heads.iter().any(|h| h == path);
        let targeted = config.target_modules.matches_site(path, is_linear, is_head)
            && config.allows(path)
            && !saved.iter().any(|s| module_covers(s, path));
        if !targeted {
            return;
        }
        match plan_site(site, path, config, name, tensors) {
            Ok((planned, keys)) => {
                plan.push((path.to_string(), planned));
                consumed.extend(keys);
            }
            Err(e) => first_error = Some(e),
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    if plan.is_empty() {
        return Err(not_found(&config.target_modules, &all_paths));
    }
    let targeted: Vec<String> = plan.iter().map(|(p, _)| p.clone()).collect();
    let mut by_path: HashMap<String, Planned> = plan.into_iter().collect();
    let mut insert_error: Option<Error> = None;
    model.visit_sites_mut(&mut |path, site| {
        let Some(planned) = by_path.remove(path) else { return };
        let result = match (site, planned) {
            (SiteMut::Linear(s), Planned::Linear(a)) => s.adapters.insert(name, a),
            (SiteMut::Embedding(s), Planned::Embedding(a)) => s.adapters.insert(name, a),
            (SiteMut::Conv1d(s), Planned::Conv1d(a)) => s.adapters.insert(name, a),
            (SiteMut::Conv2d(s), Planned::Conv2d(a)) => s.adapters.insert(name, a),
            _ => Err(Error::InvalidState(format!("site `{path}` changed kind between two visits"))),
        };
        if let Err(e) = result {
            insert_error.get_or_insert(e);
        }
    });
    // Names were checked per site in `plan_site`, so an insertion error means a model whose
    // `visit_sites_mut` is not deterministic: report it rather than hide it.
    match insert_error {
        Some(e) => Err(e),
        None => Ok(Injection { targeted, consumed }),
    }
}

/// The "did you mean" error for targets that matched nothing.
pub fn not_found(targets: &TargetModules, paths: &[String]) -> Error {
    let wanted: Vec<String> = match targets {
        TargetModules::Names(n) => n.clone(),
        TargetModules::Regex(r) => vec![r.clone()],
        _ => Vec::new(),
    };
    Error::TargetModulesNotFound {
        targets: targets.describe(),
        closest: closest_names(&wanted, paths.iter().map(String::as_str), 8),
    }
}

fn taken(name: &str) -> Error {
    Error::InvalidAdapterName { name: name.into(), reason: "is already used by this model" }
}

fn plan_site(
    site: SiteMut<'_>,
    path: &str,
    config: &LoraConfig,
    name: &str,
    tensors: Option<&AdapterTensors>,
) -> Result<(Planned, Vec<String>)> {
    let r = config.rank_for(path);
    let scaling = config.scaling_for(path);
    let dropout = config.lora_dropout;
    if site.holds(name) {
        return Err(taken(name));
    }
    match site {
        SiteMut::Linear(site) => {
            let [d_in, d_out] = site.dims();
            let device = site.base_layer.weight.lazy_device();
            let adapter = match tensors {
                Some(t) => {
                    let (a, b, keys) = pair(t, path, "lora_A.weight", [r, d_in], "lora_B.weight", [d_out, r])?;
                    return Ok((Planned::Linear(Box::new(LoraLinear::from_torch(a, b, scaling, dropout, &device))), keys));
                }
                None => {
                    let (a, b) = factors(&config.init_lora_weights, r, ([d_in, r], d_in), ([r, d_out], r), &device);
                    LoraLinear::new(a, b, scaling, dropout)
                }
            };
            Ok((Planned::Linear(Box::new(adapter)), Vec::new()))
        }
        SiteMut::Embedding(site) => {
            let [n, d] = site.dims();
            let device = site.base_layer.weight.lazy_device();
            let adapter = match tensors {
                Some(t) => {
                    let (a, b, keys) = pair(t, path, "lora_embedding_A", [r, n], "lora_embedding_B", [d, r])?;
                    return Ok((Planned::Embedding(Box::new(LoraEmbedding::from_torch(a, b, scaling, &device))), keys));
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
                    LoraEmbedding::new(a, b, scaling)
                }
            };
            Ok((Planned::Embedding(Box::new(adapter)), Vec::new()))
        }
        SiteMut::Conv1d(site) => {
            let base = &site.base_layer;
            let [c_out, c_in, k] = base.weight.lazy_shape().dims();
            let device = base.weight.lazy_device();
            let (adapter, keys) = match tensors {
                Some(t) => {
                    let (a, b, keys) = pair(t, path, "lora_A.weight", [r, c_in, k], "lora_B.weight", [c_out, r, 1])?;
                    (LoraConv1d::from_torch(base, a, b, scaling, dropout, &device)?, keys)
                }
                None => {
                    let (a, b) = factors(&config.init_lora_weights, r, ([r, c_in, k], c_in * k), ([c_out, r, 1], r), &device);
                    (LoraConv1d::new(base, a, b, scaling, dropout)?, Vec::new())
                }
            };
            Ok((Planned::Conv1d(Box::new(adapter)), keys))
        }
        SiteMut::Conv2d(site) => {
            let base = &site.base_layer;
            let [c_out, c_in, kh, kw] = base.weight.lazy_shape().dims();
            let device = base.weight.lazy_device();
            let (adapter, keys) = match tensors {
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
            Ok((Planned::Conv2d(Box::new(adapter)), keys))
        }
        // As in the Python library, which has no LoRA layer for `nn.BatchNorm2d`.
        SiteMut::BatchNorm2d(_) => Err(Error::Unsupported {
            what: format!("LoRA on the batch norm layer `{path}`"),
            supported: "linear, embedding and convolution layers (list the module in modules_to_save to train it in full)".into(),
        }),
    }
}

/// Looks up `{path}.{a}` and `{path}.{b}` and checks their shapes.
fn pair<const DA: usize, const DB: usize>(
    tensors: &AdapterTensors,
    path: &str,
    a: &str,
    a_shape: [usize; DA],
    b: &str,
    b_shape: [usize; DB],
) -> Result<(TensorData, TensorData, Vec<String>)> {
    let a_key = format!("{path}.{a}");
    let b_key = format!("{path}.{b}");
    let a_data = lookup(tensors, &a_key, path, a, &a_shape)?;
    let b_data = lookup(tensors, &b_key, path, b, &b_shape)?;
    Ok((a_data, b_data, vec![a_key, b_key]))
}

fn lookup(tensors: &AdapterTensors, key: &str, path: &str, suffix: &str, shape: &[usize]) -> Result<TensorData> {
    let data = tensors.get(key).ok_or_else(|| Error::MissingTensor {
        key: key.to_string(),
        file: "adapter_model.safetensors".into(),
        fix: "the adapter file does not fit this config: check target_modules and the base model".into(),
    })?;
    if data.shape().as_slice() != shape {
        return Err(Error::ShapeMismatch {
            path: path.to_string(),
            tensor: suffix.to_string(),
            expected: shape.to_vec(),
            actual: data.shape().to_vec(),
        });
    }
    Ok(data.clone())
}

