//! `PeftModel::forward` and `PeftModel::generate`: the task run with every active adapter.
//!
//! Layer adapters act inside the wrapped model's sites by themselves; model-level adapters
//! (prompt methods) rewrite the inputs first ([`ModelAdapter::prepare`]). Training and serving
//! take the same path, so the first greedily generated token is the argmax of the training
//! forward's last logits.

use burn::tensor::{Int, Tensor};
use peft_core::generation::{GenerationConfig, Generated};
use peft_core::{Error, Logits, ModelAdapter, ModelInputs, PrepareContext, Result, TaskModel, TaskOutput, TaskType};

use crate::model::PeftModel;

impl<M: TaskModel> PeftModel<M> {
    /// The task's output with the active adapters, and its loss when `inputs.labels` is set.
    ///
    /// For causal LMs the logits line up with the real tokens: the positions of virtual tokens a
    /// prompt method adds in front are dropped, as the Python library does.
    ///
    /// # Shapes
    /// See [`ModelInputs`] and [`Logits`].
    ///
    /// # Errors
    /// A missing input; an input the model cannot take; labels that do not fit the head.
    pub fn forward(&self, inputs: ModelInputs) -> Result<TaskOutput> {
        let (inputs, virtual_positions) = self.prepare_inputs(inputs)?;
        let mut output = self.base_model.forward_task(inputs)?;
        if virtual_positions > 0 && self.base_model.task_type() == Some(TaskType::CausalLm) {
            output.logits = drop_leading_positions(output.logits, virtual_positions)?;
        }
        Ok(output)
    }

    /// New tokens after `inputs` with the active adapters (see
    /// [`peft_core::generation::GenerationConfig`] for the options).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for heads that do not generate; the config's errors.
    pub fn generate(&self, inputs: ModelInputs, config: &GenerationConfig) -> Result<Generated> {
        let (inputs, _) = self.prepare_inputs(inputs)?;
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

/// Drops the first `n` positions of `[batch, len, vocab]` logits.
fn drop_leading_positions(logits: Logits, n: usize) -> Result<Logits> {
    let logits = logits.rank3()?;
    let [batch, len, vocab] = logits.dims();
    if n > len {
        return Err(Error::InvalidState(format!("{n} virtual positions but only {len} in the logits")));
    }
    Ok(Logits::Rank3(logits.slice([0..batch, n..len, 0..vocab])))
}
