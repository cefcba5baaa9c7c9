//! Token rows to padded tensors, and the order examples are drawn in.

use peft::burn::tensor::{Device, Int, Tensor, TensorData};

use crate::rng::Rng;

/// Batches are padded to a multiple of this many tokens, so a backend that compiles or tunes
/// kernels per shape sees a handful of shapes instead of one per batch.
pub const PAD_MULTIPLE: usize = 16;

/// Rows of token ids, right-padded with `pad_id` to the longest (rounded up to [`PAD_MULTIPLE`]): `(input_ids, attention_mask)`.
///
/// # Shapes
/// - output: `[rows.len(), longest rounded up]` each
pub fn pad_right(rows: &[&[u32]], pad_id: u32, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1).next_multiple_of(PAD_MULTIPLE);
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut mask = Vec::with_capacity(rows.len() * width);
    for row in rows {
        ids.extend(row.iter().map(|&t| i64::from(t)));
        ids.extend(std::iter::repeat_n(i64::from(pad_id), width - row.len()));
        mask.extend(std::iter::repeat_n(1i64, row.len()));
        mask.extend(std::iter::repeat_n(0i64, width - row.len()));
    }
    let shape = [rows.len(), width];
    (Tensor::from_data(TensorData::new(ids, shape), device), Tensor::from_data(TensorData::new(mask, shape), device))
}

/// Cuts `ids` to `max` tokens, keeping the last one (the closing special token, `[SEP]`/`</s>`).
pub fn truncate_keep_last(mut ids: Vec<u32>, max: usize) -> Vec<u32> {
    if ids.len() > max && max >= 1 {
        let last = ids[ids.len() - 1];
        ids.truncate(max - 1);
        ids.push(last);
    }
    ids
}

/// Endless shuffled passes over `n` examples, `batch` at a time (a new order every pass).
pub struct Batches {
    order: Vec<usize>,
    at: usize,
    batch: usize,
    rng: Rng,
}

impl Batches {
    /// Batches of `batch` indices below `n`, shuffled with `seed`.
    pub fn new(n: usize, batch: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        Batches { order, at: 0, batch: batch.max(1), rng }
    }

    /// The next batch's example indices (empty only when there are no examples).
    pub fn next_batch(&mut self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.batch);
        while out.len() < self.batch && !self.order.is_empty() {
            if self.at == self.order.len() {
                self.rng.shuffle(&mut self.order);
                self.at = 0;
            }
            out.push(self.order[self.at]);
            self.at += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_closing_token() {
        assert_eq!(truncate_keep_last(vec![101, 5, 6, 7, 102], 4), vec![101, 5, 6, 102]);
        assert_eq!(truncate_keep_last(vec![101, 102], 4), vec![101, 102]);
    }

    #[test]
    fn batches_cover_every_example_each_pass() {
        let mut b = Batches::new(10, 4, 1);
        let mut seen: Vec<usize> = (0..5).flat_map(|_| b.next_batch()).collect();
        assert_eq!(seen.len(), 20);
        seen.truncate(10);
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert!(Batches::new(0, 4, 1).next_batch().is_empty());
    }
}
