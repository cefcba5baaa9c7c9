//! Sequence classification: fine-tune on (tokens, class) pairs and measure accuracy.

use anyhow::Result;
use peft::burn::optim::{AdamWConfig, GradientsParams};
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::models::bert::{BertForSequenceClassification, RobertaForSequenceClassification, cross_entropy};
use peft::{AdapterSites, PeftModel};

use super::batch::{Batches, pad_right};
use super::{TrainOptions, loss_bar, running_mean, scalar};

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
    mut model: PeftModel<M>,
    data: &Examples,
    options: &TrainOptions,
    device: &Device,
) -> Result<(PeftModel<M>, Vec<f32>)> {
    let mut optimizer = AdamWConfig::new().with_weight_decay(options.weight_decay).init();
    let mut batches = Batches::new(data.len(), options.batch_size, options.seed);
    let bar = loss_bar(options.steps, "training")?;
    let mut losses = Vec::with_capacity(options.steps);
    for _ in 0..options.steps {
        let (ids, mask, labels) = data.batch(&batches.next_batch(), device);
        let loss = cross_entropy(model.model().class_logits(ids, mask), labels);
        losses.push(scalar(loss.clone())?);
        bar.set_message(format!("{:.3}", running_mean(&losses)));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(options.lr, model, grads);
        bar.inc(1);
    }
    bar.finish();
    Ok((model, losses))
}

/// Class logits of every example, `chunk` examples per forward (no gradients).
///
/// Examples are batched shortest first, so each chunk is padded only to its own longest row
/// (padding keys get no attention, so the logits are those of unpadded rows), then put back in
/// order.
///
/// # Shapes
/// - output: `[data.len(), num_labels]`
pub fn predict<M: SeqClassifier>(model: &M, data: &Examples, chunk: usize, device: &Device) -> Tensor<2> {
    let mut by_length: Vec<usize> = (0..data.len()).collect();
    by_length.sort_by_key(|&i| data.ids[i].len());
    let parts: Vec<Tensor<2>> = by_length
        .chunks(chunk.max(1))
        .map(|c| {
            let (ids, mask, _) = data.batch(c, device);
            model.class_logits(ids, mask)
        })
        .collect();
    // Row `k` of the sorted logits is example `by_length[k]`; gather them back by position.
    let mut position = vec![0i64; data.len()];
    for (k, &i) in by_length.iter().enumerate() {
        position[i] = k as i64;
    }
    let logits = Tensor::cat(parts, 0);
    let position = Tensor::<1, Int>::from_data(TensorData::new(position, [data.len()]), &logits.device());
    logits.select(0, position)
}

/// The share of examples whose highest logit is their class.
pub fn accuracy(logits: Tensor<2>, data: &Examples) -> Result<f32> {
    let predicted = logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let right = predicted.iter().zip(&data.labels).filter(|(p, l)| **p == **l as i64).count();
    Ok(right as f32 / data.len().max(1) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use peft::models::bert::BertConfig;

    #[test]
    fn predict_returns_rows_in_the_examples_order_whatever_the_chunking() {
        let device = Device::flex();
        let config = BertConfig {
            vocab_size: 96,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 64,
            initializer_range: 0.5,
            num_labels: 3,
            ..BertConfig::default()
        };
        let model = BertForSequenceClassification::new(&config, &device);
        let lengths = [30, 3, 17, 9, 40, 5, 22];
        let ids: Vec<Vec<u32>> = lengths.iter().enumerate().map(|(i, &n)| (0..n).map(|t| 1 + ((7 * i + 3 * t) % 90) as u32).collect()).collect();
        let data = Examples { labels: vec![0; ids.len()], ids, pad_id: 0 };
        let one_by_one: Vec<f32> = (0..data.len())
            .flat_map(|i| {
                let (ids, mask, _) = data.batch(&[i], &device);
                model.class_logits(ids, mask).into_data().to_vec::<f32>().unwrap()
            })
            .collect();
        let chunked = predict(&model, &data, 3, &device).into_data().to_vec::<f32>().unwrap();
        assert_eq!(one_by_one.len(), 3 * lengths.len());
        for (a, b) in one_by_one.iter().zip(&chunked) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}
