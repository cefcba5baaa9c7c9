//! Sequence classification: fine-tune on (tokens, class) pairs and measure accuracy.

use anyhow::Result;
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::models::bert::{BertForSequenceClassification, RobertaForSequenceClassification, cross_entropy};
use peft::{AdapterSites, PeftModel};

use super::batch::pad_right;
use super::TrainOptions;

/// A model with a classification head the trainer can drive.
pub trait SeqClassifier: AdapterSites {
    /// Class logits.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]`
    /// - output: `[batch, num_labels]`
    fn class_logits(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2, Int>) -> Tensor<2>;
}

impl SeqClassifier for BertForSequenceClassification {
    fn class_logits(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
        self.forward(input_ids, Some(attention_mask), None)
    }
}

impl SeqClassifier for RobertaForSequenceClassification {
    fn class_logits(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
        self.forward(input_ids, Some(attention_mask), None)
    }
}

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
}

/// Trains the model's trainable parameters with AdamW on cross-entropy; returns the loss of every
/// step. The model must live on an autodiff device.
pub fn train<M: SeqClassifier>(
    model: PeftModel<M>,
    data: &Examples,
    options: &TrainOptions,
    device: &Device,
) -> Result<(PeftModel<M>, Vec<f32>)> {
    super::fit(model, data.len(), options, |m, batch| {
        let (ids, mask, labels) = data.batch(batch, device);
        cross_entropy(m.class_logits(ids, mask), labels)
    })
}

/// Class logits of every example, `chunk` examples per forward (no gradients).
///
/// # Shapes
/// - output: `[data.len(), num_labels]`
pub fn predict<M: SeqClassifier>(model: &M, data: &Examples, chunk: usize, device: &Device) -> Tensor<2> {
    let indices: Vec<usize> = (0..data.len()).collect();
    let parts: Vec<Tensor<2>> = indices
        .chunks(chunk.max(1))
        .map(|c| {
            let (ids, mask, _) = data.batch(c, device);
            model.class_logits(ids, mask)
        })
        .collect();
    Tensor::cat(parts, 0)
}

/// The share of examples whose highest logit is their class.
pub fn accuracy(logits: Tensor<2>, data: &Examples) -> Result<f32> {
    let predicted = logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let right = predicted.iter().zip(&data.labels).filter(|(p, l)| **p == **l as i64).count();
    Ok(right as f32 / data.len().max(1) as f32)
}
