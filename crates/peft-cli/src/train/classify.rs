//! Sequence classification: fine-tune on (tokens, class) pairs and measure accuracy.

use anyhow::{Context, Result};
use peft::burn::module::Module;
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::{Labels, ModelInputs, PeftModel, TaskModel};

use super::batch::pad_right;
use super::{History, TrainOptions};

/// Tokenised examples with their classes.
pub struct Examples {
    /// Token ids per example.
    pub ids: Vec<Vec<u32>>,
    /// Class index per example.
    pub labels: Vec<usize>,
    /// The padding token id.
    pub pad_id: u32,
}

impl Examples {
    /// Examples `indices` as tensors: `(input_ids, attention_mask, labels)`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<1, Int>) {
        let rows: Vec<&[u32]> = indices.iter().map(|&i| self.ids[i].as_slice()).collect();
        let (ids, mask) = pad_right(&rows, self.pad_id, device);
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        (ids, mask, Tensor::from_data(TensorData::new(labels, [indices.len()]), device))
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The first `n` examples (all of them when there are fewer).
    pub fn head(&self, n: usize) -> Examples {
        let n = n.min(self.len());
        Examples { ids: self.ids[..n].to_vec(), labels: self.labels[..n].to_vec(), pad_id: self.pad_id }
    }
}

/// Trains the model's trainable parameters with AdamW on cross-entropy; returns the loss of every
/// step and, with `eval`, its loss and accuracy every `options.eval_every` steps. The model must
/// live on an autodiff device.
pub fn train<M: TaskModel>(
    model: PeftModel<M>,
    data: &Examples,
    eval: Option<&Examples>,
    options: &TrainOptions,
    device: &Device,
) -> Result<(PeftModel<M>, History)> {
    // Inference copies run on the plain device: inputs made on the autodiff one would be tracked.
    let plain = device.clone().inner();
    let mut evaluate = eval.map(|eval| {
        move |m: &PeftModel<M>| -> Result<(f32, Option<f32>)> {
            let (loss, accuracy) = scores(predict(&m.valid(), eval, 32, &plain)?, eval)?;
            Ok((loss, Some(accuracy)))
        }
    });
    let loss = |m: &PeftModel<M>, batch: &[usize]| {
        let (ids, mask, labels) = data.batch(batch, device);
        let output = m.forward(ModelInputs::ids_with_mask(ids, mask).with_labels(Labels::Sequence(labels)))?;
        output.loss.context("the classifier returned no loss")
    };
    super::fit(model, data.len(), options, loss, evaluate.as_mut().map(|f| f as &mut super::Evaluate<'_, M>))
}

/// Class logits of every example, `chunk` examples per forward (no gradients). Examples are
/// grouped by length so chunks carry little padding; rows come back in the data's order.
///
/// # Shapes
/// - output: `[data.len(), num_labels]`
pub fn predict<M: TaskModel>(model: &PeftModel<M>, data: &Examples, chunk: usize, device: &Device) -> Result<Tensor<2>> {
    predict_with(data, chunk, device, |ids, mask| Ok(model.logits(ids, Some(mask))?.rank2()?))
}

/// [`predict`] with any function from `(input_ids, attention_mask)` to class logits (a merged
/// model, say).
pub fn predict_with(
    data: &Examples,
    chunk: usize,
    device: &Device,
    logits: impl Fn(Tensor<2, Int>, Tensor<2, Int>) -> Result<Tensor<2>>,
) -> Result<Tensor<2>> {
    let mut by_length: Vec<usize> = (0..data.len()).collect();
    by_length.sort_by_key(|&i| data.ids[i].len());
    let parts = by_length
        .chunks(chunk.max(1))
        .map(|c| {
            let (ids, mask, _) = data.batch(c, device);
            logits(ids, mask)
        })
        .collect::<Result<Vec<Tensor<2>>>>()?;
    // Row r of the sorted result is example by_length[r]; put each example back at its index.
    let mut position = vec![0i64; data.len()];
    for (row, &example) in by_length.iter().enumerate() {
        position[example] = row as i64;
    }
    let order = Tensor::<1, Int>::from_data(TensorData::new(position, [data.len()]), device);
    Ok(Tensor::cat(parts, 0).select(0, order))
}

/// The mean cross-entropy and the accuracy of class `logits` against the examples' classes.
///
/// # Shapes
/// - `logits`: `[data.len(), num_labels]`
pub fn scores(logits: Tensor<2>, data: &Examples) -> Result<(f32, f32)> {
    let [rows, classes] = logits.dims();
    let values = logits.into_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("cannot read the logits: {e:?}"))?;
    anyhow::ensure!(rows == data.len() && classes > 0, "{rows} rows of logits for {} examples", data.len());
    let (mut loss, mut right) = (0.0f64, 0usize);
    for (row, &label) in values.chunks(classes).zip(&data.labels) {
        // log-sum-exp around the row's maximum, so large logits do not overflow.
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = f64::from(max) + row.iter().map(|&v| f64::from(v - max).exp()).sum::<f64>().ln();
        loss += log_sum - f64::from(row.get(label).copied().unwrap_or(f32::NAN));
        let best = row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best });
        right += usize::from(best == label);
    }
    let n = rows.max(1) as f64;
    Ok(((loss / n) as f32, (right as f64 / n) as f32))
}

/// The share of examples whose highest logit is their class.
pub fn accuracy(logits: Tensor<2>, data: &Examples) -> Result<f32> {
    let predicted = logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let right = predicted.iter().zip(&data.labels).filter(|(p, l)| **p == **l as i64).count();
    Ok(right as f32 / data.len().max(1) as f32)
}
