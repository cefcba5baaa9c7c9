//! Feature extraction: one vector per text from an encoder's token vectors.

use anyhow::{Result, anyhow};
use peft::burn::tensor::{Int, Tensor};

use super::{Job, Sink};

/// How the token vectors of a text become one vector.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the real tokens (padding left out), as sentence-transformers' mean pooling.
    Mean,
    /// The first token's vector (BERT's `[CLS]`).
    First,
}

/// Writes each row's `embedding` (`--pooling` of the last hidden states).
pub(super) fn embed(job: &Job<'_>, sink: &mut Sink) -> Result<()> {
    let texts = job.texts(&job.args.text_column, "--text-column")?;
    let bar = job.progress()?;
    let batch_size = job.args.batch_size.max(1);
    for (chunk_index, chunk) in texts.chunks(batch_size).enumerate() {
        let (input_ids, mask) = job.encode(chunk)?;
        let len = input_ids.dims()[1];
        let hidden = job.token_outputs(job.model.forward(peft::ModelInputs::ids_with_mask(input_ids, mask.clone()))?.rank3()?, len);
        let [batch, _, width] = hidden.dims();
        let pooled = pool(hidden, mask, job.args.pooling);
        let values: Vec<f32> = pooled.into_data().convert::<f32>().try_to_vec().map_err(|e| anyhow!("cannot read the output: {e:?}"))?;
        for (row, vector) in values.chunks(width).enumerate().take(batch) {
            let embedding: Vec<f64> = vector.iter().map(|v| super::round(*v)).collect();
            sink.write(&[("text", texts[chunk_index * batch_size + row])], serde_json::json!({ "embedding": embedding }))?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

/// One vector per row.
///
/// # Shapes
/// - `hidden`: `[batch, len, width]`, `mask`: `[batch, len]`; output `[batch, width]`
fn pool(hidden: Tensor<3>, mask: Tensor<2, Int>, pooling: Pooling) -> Tensor<2> {
    let [batch, _, width] = hidden.dims();
    match pooling {
        Pooling::First => hidden.narrow(1, 0, 1).reshape([batch, width]),
        Pooling::Mean => {
            let weights = mask.float().cast(hidden.dtype()).unsqueeze_dim::<3>(2);
            let counts = weights.clone().sum_dim(1).clamp_min(1.0);
            ((hidden * weights).sum_dim(1) / counts).reshape([batch, width])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peft::burn::tensor::TensorData;

    #[test]
    fn mean_pooling_leaves_padding_out() {
        let device = peft::device::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let hidden = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 100.0, 100.0], [1, 3, 2]), &device);
        let mask = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 1, 0], [1, 3]), &device);
        let mean = pool(hidden.clone(), mask.clone(), Pooling::Mean).into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(mean, [2.0, 3.0]);
        let first = pool(hidden, mask, Pooling::First).into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(first, [1.0, 2.0]);
    }
}
