//! `PeftModel::forward` and `PeftModel::generate`: the task run with every active adapter.
//!
//! Layer adapters act inside the wrapped model's sites by themselves; model-level adapters
//! (prompt methods) rewrite the inputs first ([`ModelAdapter::prepare`]). Training and serving
//! take the same path, so the first greedily generated token is the argmax of the training
//! forward's last logits.

use burn::tensor::{Int, Tensor};
use peft_core::generation::{GenerationConfig, Generated};
use peft_core::{Error, Logits, ModelAdapter, ModelInputs, PrepareContext, Result, TaskModel, TaskOutput};

use crate::model::PeftModel;

impl<M: TaskModel> PeftModel<M> {
    /// The task's output with the active adapters, and its loss when `inputs.labels` is set.
    ///
    /// With a training AdaLoRA adapter the loss includes its orthogonality penalty
    /// ([`PeftModel::adalora_orth_reg`]), as the Python library's forward returns it.
    ///
    /// As in the Python library, a causal LM's logits include the positions of the virtual tokens
    /// prompt tuning and P-tuning put in front (`[batch, num_virtual_tokens + len, vocab]`;
    /// [`ModelAdapter::virtual_positions`] says how many); prefix tuning adds none.
    ///
    /// # Shapes
    /// See [`ModelInputs`] and [`Logits`].
    ///
    /// # Errors
    /// A missing input; an input the model cannot take; labels that do not fit the head.
    pub fn forward(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        let limits = self.base_model.input_limits();
        limits.check_ids_and_shapes(&inputs)?;
        let (inputs, _) = self.prepare_inputs(inputs)?;
        limits.check_forward_positions(&inputs)?;
        #[allow(unused_mut)]
        let mut output = self.base_model.forward_task(inputs)?;
        // AdaLoRA's orthogonality penalty joins the loss, as in the Python library.
        #[cfg(feature = "lora")]
        self.adalora_after_forward(&mut output);
        Ok(output)
    }

    /// New tokens after `inputs` with the active adapters (see
    /// [`peft_core::generation::GenerationConfig`] for the options).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for heads that do not generate; the config's errors.
    pub fn generate(&self, inputs: ModelInputs, config: &GenerationConfig) -> Result<Generated> {
        let limits = self.base_model.input_limits();
        limits.check_ids_and_shapes(&inputs)?;
        let (inputs, _) = self.prepare_inputs(inputs)?;
        let encoder_decoder = self.base_model.task_type() == Some(peft_core::TaskType::Seq2SeqLm);
        limits.check_generation_positions(&inputs, config, encoder_decoder)?;
        self.base_model.generate(inputs, config)
    }

    /// Token ids in, logits out: [`PeftModel::forward`] for the common case.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`
    pub fn logits(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> Result<Logits> {
        let inputs = ModelInputs { input_ids: Some(input_ids), attention_mask, ..Default::default() };
        Ok(self.forward(inputs)?.logits)
    }

    /// The positions the active prompt-style adapter puts in front of the tokens (prompt tuning,
    /// P-tuning: `num_virtual_tokens`; prefix tuning and layer methods: 0), so a caller can keep
    /// inputs within the position table and find the tokens' outputs behind them.
    pub fn virtual_positions(&self) -> usize {
        if self.registry.disabled {
            return 0;
        }
        self.registry.active.iter().filter_map(|name| self.model_adapters.get(name)).map(|a| a.virtual_positions()).max().unwrap_or(0)
    }

    /// Applies the active model-level adapter, if any; returns the inputs and how many virtual
    /// positions it put in front.
    fn prepare_inputs(&self, inputs: ModelInputs) -> Result<(ModelInputs, usize)> {
        if self.registry.disabled {
            return Ok((inputs, 0));
        }
        let active: Vec<&dyn ModelAdapter> =
            self.registry.active.iter().filter_map(|name| self.model_adapters.get(name)).collect();
        let adapter = match active.as_slice() {
            [] => return Ok((inputs, 0)),
            [one] => *one,
            _ => return Err(Error::InvalidState("several prompt-style adapters are active; activate one at a time".into())),
        };
        let embed = |ids: Tensor<2, Int>| self.base_model.embed_tokens(ids);
        let context = PrepareContext { embed_tokens: &embed, dims: self.base_model.dims().ok() };
        Ok((adapter.prepare(inputs, &context)?, adapter.virtual_positions()))
    }
}

