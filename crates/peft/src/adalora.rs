//! AdaLoRA's training hooks on [`PeftModel`]: the orthogonality penalty in the loss and the rank
//! allocator's step.
//!
//! As the Python library, one AdaLoRA adapter trains at a time: the first AdaLoRA adapter not in
//! inference mode (Python's `trainable_adapter_name`).

use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use peft_core::{AdaLoraConfig, AdapterSites, Error, PeftConfig, Result, TaskOutput};
use peft_lora::adalora;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::model::PeftModel;

pub use peft_lora::adalora::Allocation;

/// Whether a training run calls [`PeftModel::update_and_allocate`]: labelled forwards are
/// counted, and a run past `tinit` that never called it is warned about once.
#[derive(Clone, Debug, Default)]
pub(crate) struct AllocationWatch {
    labelled_forwards: Arc<AtomicUsize>,
    allocated: Arc<AtomicBool>,
    warned: Arc<AtomicBool>,
}

impl<M: AdapterSites> PeftModel<M> {
    /// The AdaLoRA adapter that trains, with its config.
    fn training_adalora(&self) -> Option<(&str, &AdaLoraConfig)> {
        self.registry.entries.iter().find_map(|(name, entry)| match &entry.config {
            PeftConfig::AdaLora(c) if !c.common.inference_mode => Some((name.as_str(), c)),
            _ => None,
        })
    }

    /// `orth_reg_weight * mean over the factors P of ||P Pᵀ - I||_F` of the training AdaLoRA
    /// adapter (`A Aᵀ` for every `lora_A`, `Bᵀ B` for every `lora_B`), shape `[1]`; `None`
    /// without a training AdaLoRA adapter. [`PeftModel::forward`] adds it to the loss whenever
    /// labels are given, as the Python library's `AdaLoraModel.forward` does.
    pub fn adalora_orth_reg(&self) -> Option<Tensor<1>> {
        let (name, config) = self.training_adalora()?;
        let reg = adalora::orth_regularization(&self.base_model, name)?;
        Some(reg.mul_scalar(config.orth_reg_weight))
    }

    /// Adds the orthogonality penalty to a labelled forward's loss, and watches for training
    /// runs that never allocate ranks.
    pub(crate) fn adalora_after_forward(&self, output: &mut TaskOutput) {
        let Some(loss) = output.loss.take() else { return };
        output.loss = Some(match self.adalora_orth_reg() {
            Some(reg) => loss + reg,
            None => loss,
        });
        let Some((name, config)) = self.training_adalora() else { return };
        let watch = &self.registry.adalora;
        let forwards = watch.labelled_forwards.fetch_add(1, Ordering::Relaxed) + 1;
        if forwards > config.tinit + 1 && !watch.allocated.load(Ordering::Relaxed) && !watch.warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "AdaLoRA adapter `{name}`: {forwards} training forwards and tinit = {}, but update_and_allocate was never called, \
                 so no rank is ever pruned; call model.update_and_allocate(step, &grads) after each optimizer step",
                config.tinit
            );
        }
    }

    /// One step of AdaLoRA's rank allocation for the training AdaLoRA adapter, as the Python
    /// library's `update_and_allocate(global_step)`: call it at every training step `step`
    /// (counting from 0) after the optimizer step, with that step's gradients.
    ///
    /// It updates the importance of every factor entry (`|w * grad|`, smoothed by `beta1`, its
    /// uncertainty by `beta2`), and on the schedule's masking steps zeroes the singular values
    /// of the least important ranks down to the step's budget. The resulting `rank_pattern` is
    /// stored in the adapter's config: [`PeftModel::save_pretrained`] writes it and cuts the
    /// saved factors to the kept ranks, as the Python library does.
    ///
    /// Burn's optimizers consume the gradients; keep the ones this needs with
    /// [`PeftModel::copy_adalora_gradients`] before `optim.step`.
    ///
    /// # Errors
    /// [`Error::InvalidState`] without a training AdaLoRA adapter, or when a factor has no
    /// gradient while scores are updated.
    pub fn update_and_allocate(&mut self, step: usize, grads: &GradientsParams) -> Result<Allocation> {
        let (name, config) = self
            .training_adalora()
            .map(|(n, c)| (n.to_string(), c.clone()))
            .ok_or_else(|| Error::InvalidState("update_and_allocate needs an AdaLoRA adapter that trains (not in inference mode)".into()))?;
        let mut config = config;
        let allocation = adalora::update_and_allocate(&mut self.base_model, &name, &mut config, step, &|id| grads.get::<2>(id))?;
        if let Some(entry) = self.registry.entries.get_mut(&name) {
            entry.config = PeftConfig::AdaLora(config);
        }
        self.registry.adalora.allocated.store(true, Ordering::Relaxed);
        Ok(allocation)
    }

    /// A copy of the gradients of the training AdaLoRA adapter's factors (`A`, `E`, `B` of its
    /// linear and convolution layers), for [`PeftModel::update_and_allocate`] after the optimizer
    /// step has consumed `grads`.
    pub fn copy_adalora_gradients(&self, grads: &GradientsParams) -> GradientsParams {
        let mut copy = GradientsParams::new();
        let Some((name, _)) = self.training_adalora() else { return copy };
        for id in adalora::factor_ids(&self.base_model, name) {
            if let Some(g) = grads.get::<2>(id) {
                copy.register(id, g);
            }
        }
        copy
    }
}
