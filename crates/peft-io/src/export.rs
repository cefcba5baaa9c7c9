//! A model's weights under transformers' key names, for a merged model folder.
//!
//! The inverse of [`crate::weights::load_into`]: every base parameter (adapters left out) under
//! its transformers key, linear weights back in PyTorch's `[d_output, d_input]` layout, tied
//! copies left out (transformers re-ties them), batch-norm running statistics included.

use burn::module::{ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};
use peft_core::{AdapterSites, Result, SiteMut};
use std::collections::HashMap;
use std::path::Path;

use crate::stored::transpose_bytes;
use crate::weights::{ParamCollector, SiteParams, file_key, join, split_key};

/// Every base parameter of `model` as `(transformers key, value)`, in visiting order.
///
/// # Errors
/// [`peft_core::Error::Format`] when a parameter cannot be read back as f32.
pub fn model_tensors<M: AdapterSites>(model: &M) -> Result<Vec<(String, TensorData)>> {
    let sites = SiteParams::collect(model);
    let mut params = ParamCollector::default();
    model.visit(&mut params);
    // A packed layer's parameter is a placeholder (never read: reading it would allocate the
    // whole weight); its values are the dequantized blocks, taken when the loop below needs them.
    let mut packed = HashMap::new();
    model.visit_sites(&mut |_, site| {
        if let SiteMut::Linear(l) = site
            && l.packed.is_some()
        {
            packed.insert(l.base_layer.weight.id, l.clone());
        }
    });
    let mut values = Values(HashMap::new(), packed.keys().copied().collect());
    model.visit(&mut values);
    let tied: Vec<String> = model.tied_weights().into_iter().map(|(copy, _)| copy).collect();

    let mut out = Vec::new();
    for param in params.found {
        if sites.adapter_ids.contains(&param.id) {
            continue;
        }
        let (module, name, transpose) = match sites.keys.get(&param.id) {
            Some(site) => (site.module.clone(), site.name.clone(), site.transpose),
            None => split_key(&file_key(&param.path)),
        };
        let key = join(&module, &name);
        if tied.contains(&key) {
            continue;
        }
        let data = match packed.remove(&param.id) {
            Some(layer) => layer.base_weight().into_data(),
            None => match values.0.remove(&param.id) {
                Some(data) => data,
                None => continue,
            },
        };
        let data = match param.shape[..] {
            [rows, cols] if transpose => transpose_bytes(data.convert::<f32>(), rows, cols),
            _ => data.convert::<f32>(),
        };
        out.push((key, data));
    }
    model.visit_sites(&mut |path, site| {
        if let SiteMut::BatchNorm2d(n) = site {
            out.push((format!("{path}.running_mean"), n.base_layer.running_mean.clone().into_data()));
            out.push((format!("{path}.running_var"), n.base_layer.running_var.clone().into_data()));
        }
    });
    Ok(out)
}

/// Writes `model`'s base weights to `dir/model.safetensors` (atomically) under transformers' keys.
pub fn write_model<M: AdapterSites>(model: &M, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| peft_core::Error::io("cannot create", dir, e))?;
    crate::tensors::write_safetensors(&dir.join(crate::weights::MODEL_FILE), model_tensors(model)?)
}

/// Every parameter's values by id, except those in `skip`.
#[derive(Default)]
struct Values(HashMap<ParamId, TensorData>, std::collections::HashSet<ParamId>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.1.contains(&param.id) {
            self.0.insert(param.id, param.val().into_data());
        }
    }
}
