//! The decoder cache of the encoder-decoders (T5, Whisper): transformers' `EncoderDecoderCache`.

use burn::tensor::{Int, Tensor};

use super::SelectRows;
use crate::cache::{KvCache, LayerKv};

/// What an encoder-decoder's decoder keeps between steps: self-attention keys and values that
/// grow by one step at a time, and per layer the encoder output's cross-attention keys and
/// values, computed on the first step and reused after.
///
/// The position of the next decoder token is [`EncoderDecoderCache::seen`], the self-attention
/// cache's length, as in transformers. A prefix for prefix tuning goes in the self-attention
/// part ([`EncoderDecoderCache::from_prefix`]); the decoder tokens then sit after it.
#[derive(Clone, Debug)]
pub struct EncoderDecoderCache {
    /// Self-attention keys and values of the decoder tokens seen so far (and of a prefix).
    pub self_attn: KvCache,
    /// Per layer, the encoder output's keys and values, once computed.
    cross: Vec<Option<LayerKv>>,
}

impl EncoderDecoderCache {
    /// An empty cache for a decoder with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        EncoderDecoderCache { self_attn: KvCache::new(num_layers), cross: vec![None; num_layers] }
    }

    /// A cache whose self-attention already holds a prefix (see [`KvCache::from_prefix`]): PEFT
    /// puts prefix tuning's virtual tokens there and leaves cross-attention empty.
    pub fn from_prefix(self_attn: KvCache) -> Self {
        let layers = self_attn.num_layers();
        EncoderDecoderCache { self_attn, cross: vec![None; layers] }
    }

    /// [`EncoderDecoderCache::from_prefix`] under the name T5's cache had.
    pub fn with_prefix(prefix: KvCache) -> Self {
        Self::from_prefix(prefix)
    }

    /// How many decoder positions are cached (the position of the next token).
    pub fn seen(&self) -> usize {
        self.self_attn.seen()
    }

    /// Layer `i`'s cross-attention keys and values, once computed.
    pub fn cross_attention(&self, i: usize) -> Option<&LayerKv> {
        self.cross.get(i).and_then(Option::as_ref)
    }

    /// Layer `i`'s cross-attention keys and values, computed by `make` the first time.
    pub(crate) fn cross_or_insert(&mut self, i: usize, make: impl FnOnce() -> LayerKv) -> LayerKv {
        if self.cross.len() <= i {
            self.cross.resize(i + 1, None);
        }
        self.cross[i].get_or_insert_with(make).clone()
    }
}

impl SelectRows for EncoderDecoderCache {
    fn select_rows(self, rows: Tensor<1, Int>) -> Self {
        let cross = self
            .cross
            .into_iter()
            .map(|l| l.map(|l| LayerKv { key: l.key.select(0, rows.clone()), value: l.value.select(0, rows.clone()) }))
            .collect();
        EncoderDecoderCache { self_attn: self.self_attn.select_rows(rows), cross }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn cross_keys_are_made_once_and_follow_row_selection() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let kv = |rows: Vec<f32>| {
            let n = rows.len();
            let t = Tensor::<4>::from_data(TensorData::new(rows, [n, 1, 1, 1]), &device);
            LayerKv { key: t.clone(), value: t }
        };
        let mut cache = EncoderDecoderCache::new(2);
        let mut made = 0;
        for _ in 0..2 {
            cache.cross_or_insert(1, || {
                made += 1;
                kv(vec![10.0, 20.0])
            });
        }
        assert_eq!(made, 1, "computed on the first step only");
        assert!(cache.cross_attention(0).is_none());
        let picked = cache.select_rows(Tensor::from_ints([1, 1, 0], &device));
        let key = picked.cross_attention(1).expect("kept").key.clone();
        assert_eq!(key.into_data().try_to_vec::<f32>().expect("f32"), vec![20.0, 20.0, 10.0]);
    }
}
