//! `modules_to_save`: trainable copies of whole modules (a classifier head), one per adapter.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, Linear};
use burn::tensor::{Tensor, TensorData};
use peft_core::adapted::{BatchNorm2d, SavedBatchNorm2d, SavedConv2d, SavedEmbedding, SavedLinear};
use peft_core::attach::{Attached, SiteAdapter, SiteInfo, SiteMethod, attach};
use peft_core::{AdapterSites, Error, Result, SiteKind, SiteMut, covering_module, module_covers};

use crate::tensors::TensorMap;

/// The file key of a copy's tensor: the module path and the tensor name, as the Python library
/// stores `modules_to_save` copies.
pub(crate) fn saved_key(path: &str, tensor: &str) -> String {
    format!("{path}.{tensor}")
}

/// Attaches a copy of every site covered by `names` under adapter `adapter` (from `tensors` when
/// given). Returns the copied module paths and the keys used.
///
/// A name that covers nothing is an error only when no name covers anything: the task defaults
/// (`classifier`, `score`) name heads a given architecture has only one of.
pub(crate) fn attach_modules_to_save<M: AdapterSites>(
    model: &mut M,
    names: &[String],
    adapter: &str,
    tensors: Option<&TensorMap>,
) -> Result<(Vec<String>, Vec<String>)> {
    if names.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let Attached { targeted, consumed } = attach(model, adapter, &SavedCopies { names }, tensors)?;
    let mut paths: Vec<String> = Vec::new();
    for site in &targeted {
        if let Some(module) = names.iter().find_map(|n| covering_module(n, site))
            && !paths.iter().any(|p| p == module)
        {
            paths.push(module.to_string());
        }
    }
    Ok((paths, consumed))
}

/// `modules_to_save` as a method of the attach pipeline: a trainable copy of every covered site.
struct SavedCopies<'a> {
    names: &'a [String],
}

impl SiteMethod for SavedCopies<'_> {
    fn selects(&self, site: &SiteInfo<'_>) -> bool {
        // An attention hook has no weights of its own; its projections are sites to copy.
        site.kind != SiteKind::Attention && self.names.iter().any(|n| module_covers(n, site.path))
    }

    fn build(&self, path: &str, site: SiteMut<'_>, tensors: Option<&TensorMap>) -> Result<(SiteAdapter, Vec<String>)> {
        let (copy, keys) = plan_copy(path, site, tensors)?;
        let adapter = match copy {
            Copy::Linear(c) => SiteAdapter::linear(SavedLinear { copy: c }),
            Copy::Embedding(c) => SiteAdapter::embedding(SavedEmbedding { copy: c }),
            Copy::Conv2d(c) => SiteAdapter::conv2d(SavedConv2d { copy: *c }),
            Copy::BatchNorm2d(c) => SiteAdapter::batch_norm(SavedBatchNorm2d { copy: *c }),
        };
        Ok((adapter, keys))
    }

    fn nothing_selected(&self, paths: &[String]) -> Error {
        Error::ModuleToSaveNotFound { name: self.names.join(", "), available: paths.to_vec() }
    }
}

enum Copy {
    Linear(Linear),
    Embedding(Embedding),
    // Boxed: a Conv2d carries its whole configuration.
    Conv2d(Box<Conv2d>),
    BatchNorm2d(Box<BatchNorm2d>),
}

/// A fresh parameter (new id, so optimizers never confuse it with the frozen original), in f32
/// like every trained tensor even when the base is half precision.
fn fresh<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(peft_core::adapted::precision::to_adapter_dtype(t.detach()))
}

fn plan_copy(path: &str, site: SiteMut<'_>, tensors: Option<&TensorMap>) -> Result<(Copy, Vec<String>)> {
    match site {
        SiteMut::Linear(s) => {
            let base = &s.base_layer;
            let device = base.weight.lazy_device();
            let [d_in, d_out] = s.dims();
            let mut used = Vec::new();
            let weight = match tensors {
                // PyTorch's `[d_output, d_input]` in the file.
                Some(t) => {
                    let key = saved_key(path, "weight");
                    let data = fetch(t, &key, path, "weight", &[d_out, d_in])?;
                    used.push(key);
                    Tensor::<2>::from_data(data, &device).transpose()
                }
                // A packed base is copied dequantized: the copy trains, so it is f32.
                None => s.base_weight(),
            };
            let bias = match (&base.bias, tensors) {
                (Some(_), Some(t)) => {
                    let key = saved_key(path, "bias");
                    let data = fetch(t, &key, path, "bias", &[d_out])?;
                    used.push(key);
                    Some(fresh(Tensor::<1>::from_data(data, &device)))
                }
                (Some(b), None) => Some(fresh(b.val())),
                (None, _) => None,
            };
            Ok((Copy::Linear(Linear { weight: fresh(weight), bias }), used))
        }
        SiteMut::Embedding(s) => {
            let device = s.base_layer.weight.lazy_device();
            let dims = s.dims();
            let (weight, used) = match tensors {
                Some(t) => {
                    let key = saved_key(path, "weight");
                    let data = fetch(t, &key, path, "weight", &dims)?;
                    (Tensor::<2>::from_data(data, &device), vec![key])
                }
                None => (s.base_layer.weight.val(), Vec::new()),
            };
            Ok((Copy::Embedding(Embedding { weight: fresh(weight) }), used))
        }
        SiteMut::Conv2d(s) => {
            let base = &s.base_layer;
            let device = base.weight.lazy_device();
            let shape = base.weight.lazy_shape().dims::<4>();
            let mut used = Vec::new();
            let mut take = |tensor: &str, shape: &[usize]| -> Result<Option<TensorData>> {
                let Some(t) = tensors else { return Ok(None) };
                let key = saved_key(path, tensor);
                let data = fetch(t, &key, path, tensor, shape)?;
                used.push(key);
                Ok(Some(data))
            };
            // Burn's kernel layout is PyTorch's, so file tensors load as they are.
            let weight = match take("weight", &shape)? {
                Some(data) => Tensor::<4>::from_data(data, &device),
                None => base.weight.val(),
            };
            let bias = match &base.bias {
                Some(b) => Some(fresh(match take("bias", &[shape[0]])? {
                    Some(data) => Tensor::<1>::from_data(data, &device),
                    None => b.val(),
                })),
                None => None,
            };
            // Same stride, padding and groups as the base layer; fresh parameters.
            let copy = Conv2d { weight: fresh(weight), bias, ..base.clone() };
            Ok((Copy::Conv2d(Box::new(copy)), used))
        }
        SiteMut::BatchNorm2d(s) => plan_batch_norm(path, &s.base_layer, tensors),
        SiteMut::Conv1d(_) | SiteMut::Attention(_) => Err(Error::Unsupported {
            what: format!("modules_to_save on the convolution `{path}`"),
            supported: "linear layers, embeddings, 2-D convolutions and batch norms".into(),
        }),
    }
}

/// A copy of a batch norm layer, running statistics included, from the file when given (the
/// Python library saves `weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`).
fn plan_batch_norm(path: &str, base: &BatchNorm2d, tensors: Option<&TensorMap>) -> Result<(Copy, Vec<String>)> {
    let device = base.weight.lazy_device();
    let c = base.channels();
    let Some(t) = tensors else {
        let copy = BatchNorm2d { weight: fresh(base.weight.val()), bias: fresh(base.bias.val()), ..base.clone() };
        return Ok((Copy::BatchNorm2d(Box::new(copy)), Vec::new()));
    };
    let mut used = Vec::new();
    let mut vector = |tensor: &str| -> Result<Tensor<1>> {
        let key = saved_key(path, tensor);
        let data = fetch(t, &key, path, tensor, &[c])?;
        used.push(key);
        Ok(Tensor::<1>::from_data(data.convert::<f32>(), &device))
    };
    let (weight, bias) = (vector("weight")?, vector("bias")?);
    let (running_mean, running_var) = (vector("running_mean")?, vector("running_var")?);
    let key = saved_key(path, "num_batches_tracked");
    let num_batches_tracked = match t.get(&key) {
        Some(_) => {
            let data = fetch(t, &key, path, "num_batches_tracked", &[])?.convert::<i64>();
            used.push(key);
            data.iter::<i64>().next().unwrap_or_default()
        }
        None => base.num_batches_tracked,
    };
    let copy = BatchNorm2d { weight: fresh(weight), bias: fresh(bias), running_mean, running_var, num_batches_tracked, eps: base.eps };
    Ok((Copy::BatchNorm2d(Box::new(copy)), used))
}

pub(crate) fn fetch(t: &TensorMap, key: &str, path: &str, tensor: &str, shape: &[usize]) -> Result<TensorData> {
    let data = t.get(key).ok_or_else(|| Error::MissingTensor {
        key: key.to_string(),
        file: peft_io::adapter::WEIGHTS_FILE.into(),
        fix: "the file lacks a tensor its adapter_config.json implies: was it saved from another model?".into(),
    })?;
    if data.shape().as_slice() != shape {
        return Err(Error::ShapeMismatch {
            path: path.to_string(),
            tensor: tensor.to_string(),
            expected: shape.to_vec(),
            actual: data.shape().to_vec(),
        });
    }
    Ok(data.clone())
}
