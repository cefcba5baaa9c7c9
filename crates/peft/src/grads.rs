//! Gradients of an adapter, keyed as its file keys are.

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use peft_core::{AdapterSites, Result};
use peft_io::adapter::site_tensors;

use crate::model::PeftModel;

/// Replaces each parameter by its gradient (or zeros when it has none).
struct ToGradients<'a> {
    grads: &'a GradientsParams,
}

impl ModuleMapper for ToGradients<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let grad = self.grads.get::<D>(param.id);
        param.map(|value| grad.unwrap_or_else(|| value.zeros_like()))
    }
}

impl<M: AdapterSites> PeftModel<M> {
    /// The gradients of adapter `name`'s parameters, keyed and laid out as in its
    /// `adapter_model.safetensors` (`model.layers.0.self_attn.q_proj.lora_A.weight: [r, in]`),
    /// without the `base_model.model.` prefix. Parameters without a gradient give zeros.
    ///
    /// A prompt-learning adapter's table comes first, under its own key (`prompt_embeddings`: the
    /// gradient of the table a loaded adapter holds); its task head's copies follow as site keys.
    pub fn adapter_gradients(&self, grads: &GradientsParams, name: &str) -> Result<Vec<(String, TensorData)>> {
        self.entry(name)?;
        let mut out = match self.model_adapters.get(name) {
            Some(_) => {
                let as_grads = self.model_adapters.clone().map(&mut ToGradients { grads });
                as_grads.get(name).map(|a| a.export()).unwrap_or_default()
            }
            None => Vec::new(),
        };
        let as_grads = self.base_model.clone().map(&mut ToGradients { grads });
        out.extend(site_tensors(&as_grads, name));
        Ok(out)
    }
}
