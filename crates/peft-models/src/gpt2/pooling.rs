//! What the decoder heads of GPT-2 and BLOOM share: loading, last-token pooling, the token and
//! span losses, default `modules_to_save`.

use burn::tensor::{Int, Tensor};
use peft_core::{AdapterSites, Result, TaskType};
use std::path::Path;

use crate::bert::{IGNORE_INDEX, cross_entropy};

/// Each row's logits at its last token that is not `pad_token_id`, as transformers' decoder
/// sequence classifiers pool: index `argmax(t * (ids[t] != pad))`, so a row of padding only
/// pools position 0. Without `input_ids` (embeddings given) or a pad id, the last position.
///
/// # Shapes
/// - `logits`: `[batch, len, n]`
/// - `input_ids`: `[batch, len]`
/// - output: `[batch, n]`
pub(crate) fn last_non_pad(logits: Tensor<3>, input_ids: Option<&Tensor<2, Int>>, pad_token_id: Option<u32>) -> Tensor<2> {
    let [batch, len, n] = logits.dims();
    let device = logits.device();
    let index = match (input_ids, pad_token_id) {
        (Some(ids), Some(pad)) => {
            let real = ids.clone().not_equal_elem(i64::from(pad)).int();
            let positions = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
            (positions * real).argmax(1)
        }
        _ => Tensor::<2, Int>::full([batch, 1], len.saturating_sub(1) as i64, &device),
    };
    logits.gather(1, index.reshape([batch, 1, 1]).repeat_dim(2, n)).reshape([batch, n])
}

/// Mean cross-entropy of per-token logits against `labels`, skipping [`IGNORE_INDEX`]
/// (transformers' token classification loss).
///
/// # Shapes
/// - `logits`: `[batch, len, n]`
/// - `labels`: `[batch, len]`
/// - output: `[1]`
pub fn token_cross_entropy(logits: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<1> {
    let [batch, len, n] = logits.dims();
    cross_entropy(logits.reshape([batch * len, n]), labels.reshape([batch * len]))
}

/// transformers' extractive QA loss: `(CE(start) + CE(end)) / 2`, positions clamped to
/// `0..=len` and those equal to `len` (outside the input) ignored.
///
/// # Shapes
/// - `start_logits`, `end_logits`: `[batch, len]`
/// - `start_positions`, `end_positions`: `[batch]`
/// - output: `[1]`
pub fn span_cross_entropy(start_logits: Tensor<2>, end_logits: Tensor<2>, start_positions: Tensor<1, Int>, end_positions: Tensor<1, Int>) -> Tensor<1> {
    let len = start_logits.dims()[1] as i64;
    let clamp = |p: Tensor<1, Int>| {
        let p = p.clamp(0, len);
        p.clone().mask_fill(p.equal_elem(len), IGNORE_INDEX)
    };
    (cross_entropy(start_logits, clamp(start_positions)) + cross_entropy(end_logits, clamp(end_positions))).div_scalar(2.0)
}

/// Loads a head model; with `new_head` the file may lack the head's weights (fresh ones kept).
pub(crate) fn load_head<M: AdapterSites>(model: M, dir: &Path, new_head: bool) -> Result<M> {
    let optional = if new_head { super::head_keys(&model.output_head_paths()) } else { Vec::new() };
    super::load(model, dir, optional)
}

/// The Python library trains `classifier` / `score` in full for TOKEN_CLS as for SEQ_CLS.
pub(crate) fn token_cls_modules_to_save(task: TaskType) -> Vec<String> {
    match task {
        TaskType::SeqCls | TaskType::TokenCls => vec!["classifier".into(), "score".into()],
        TaskType::QuestionAns => vec!["qa_outputs".into()],
        _ => Vec::new(),
    }
}

/// `[batch, len, 2]` into start and end logits.
pub(crate) fn split_span(logits: Tensor<3>) -> (Tensor<2>, Tensor<2>) {
    let [batch, len, _] = logits.dims();
    (logits.clone().narrow(2, 0, 1).reshape([batch, len]), logits.narrow(2, 1, 1).reshape([batch, len]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn pools_the_last_real_token() {
        let device = Device::flex();
        // logits[b, t, 0] = 10 b + t.
        let values: Vec<f32> = (0..2).flat_map(|b| (0..4).map(move |t| (10 * b + t) as f32)).collect();
        let logits = Tensor::<3>::from_data(TensorData::new(values, [2, 4, 1]), &device);
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![5i64, 6, 0, 0, 0, 5, 6, 7], [2, 4]), &device);
        let pooled = |ids, pad| last_non_pad(logits.clone(), ids, pad).into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(pooled(Some(&ids), Some(0)), vec![1.0, 13.0]);
        assert_eq!(pooled(None, Some(0)), vec![3.0, 13.0]);
    }

    #[test]
    fn span_loss_ignores_positions_outside_the_input() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0]], &device);
        let start = Tensor::<1, Int>::from_ints([1, 7], &device);
        let end = Tensor::<1, Int>::from_ints([1, 2], &device);
        let loss = span_cross_entropy(logits.clone(), logits, start, end).into_scalar::<f32>();
        // Start: only row 0 counts (7 is clamped to len 3 and ignored); end: both rows.
        let row0 = (2.0 + 2f32.exp()).ln() - 2.0;
        let row1 = 3f32.ln();
        let expected = (row0 + (row0 + row1) / 2.0) / 2.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }
}
