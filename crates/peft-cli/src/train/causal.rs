//! Causal language modelling: fine-tune on token rows whose labels mark what is learned.

use anyhow::{Context, Result};
use peft::burn::module::Module;
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::{Labels, ModelInputs, PeftModel, TaskModel};

use super::batch::pad_right;
use super::{History, TrainOptions, scalar};

/// Label of a position that is not learned (the prompt, padding), as in transformers.
pub const IGNORE: i64 = -100;

/// Token rows and how many leading tokens of each are prompt (not learned).
pub struct Sequences {
    /// Token ids per example (prompt then completion).
    pub ids: Vec<Vec<u32>>,
    /// Leading tokens per example that are context only.
    pub prompt_len: Vec<usize>,
    /// The padding token id.
    pub pad_id: u32,
}

impl Sequences {
    /// Examples `indices` as `(input_ids, attention_mask, labels)`, right-padded; labels are the
    /// ids with -100 on prompt and padding positions.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Int>) {
        let rows: Vec<&[u32]> = indices.iter().map(|&i| self.ids[i].as_slice()).collect();
        let (ids, mask) = pad_right(&rows, self.pad_id, device);
        let width = ids.dims()[1];
        let mut labels = Vec::with_capacity(rows.len() * width);
        for (&i, row) in indices.iter().zip(&rows) {
            for t in 0..width {
                let learned = t < row.len() && t >= self.prompt_len[i];
                labels.push(if learned { i64::from(row[t]) } else { IGNORE });
            }
        }
        (ids, mask, Tensor::from_data(TensorData::new(labels, [rows.len(), width]), device))
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Trains with AdamW on the causal LM loss; returns the loss of every step and, with `eval`, the
/// mean held-out loss every `options.eval_every` steps.
pub fn train<M: TaskModel>(
    model: PeftModel<M>,
    data: &Sequences,
    eval: Option<&Sequences>,
    options: &TrainOptions,
    device: &Device,
) -> Result<(PeftModel<M>, History)> {
    let plain = device.clone().inner();
    let mut evaluate = eval.map(|eval| move |m: &PeftModel<M>| -> Result<(f32, Option<f32>)> { Ok((mean_loss(&m.valid(), eval, 8, &plain)?, None)) });
    let loss = |m: &PeftModel<M>, batch: &[usize]| lm_loss(m, data, batch, device);
    super::fit(model, data.len(), options, loss, evaluate.as_mut().map(|f| f as &mut super::Evaluate<'_, M>))
}

/// transformers' causal LM loss of examples `batch`: position `t` predicts `labels[t + 1]`;
/// prompt and padding positions (-100) are left out.
fn lm_loss<M: TaskModel>(model: &PeftModel<M>, data: &Sequences, batch: &[usize], device: &Device) -> Result<Tensor<1>> {
    let (ids, mask, labels) = data.batch(batch, device);
    let output = model.forward(ModelInputs::ids_with_mask(ids, mask).with_labels(Labels::Tokens(labels)))?;
    output.loss.context("the language model returned no loss")
}

/// The mean loss over every example, `chunk` at a time (weighted by batch, as an estimate).
pub fn mean_loss<M: TaskModel>(model: &PeftModel<M>, data: &Sequences, chunk: usize, device: &Device) -> Result<f32> {
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut total = 0.0;
    let mut batches = 0usize;
    for c in indices.chunks(chunk.max(1)) {
        total += scalar(lm_loss(model, data, c, device)?)?;
        batches += 1;
    }
    Ok(total / batches.max(1) as f32)
}
