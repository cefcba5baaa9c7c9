//! The decoder's cache: self-attention keys and values that grow by one step at a time, and
//! cross-attention keys and values computed once from the encoder output.

use burn::tensor::{Int, Tensor};

use crate::cache::{KvCache, LayerKv};
use crate::generation::SelectRows;

/// What the decoder keeps between steps (transformers' `EncoderDecoderCache`).
///
/// The position of the next decoder token is [`WhisperCache::seen`], the self-attention cache's
/// length, as in transformers.
#[derive(Clone, Debug)]
pub struct WhisperCache {
    /// Self-attention keys and values of the decoder tokens seen so far (and of a prefix).
    pub self_attn: KvCache,
    /// Per layer, the encoder output's keys and values, filled on the first step.
    cross: Vec<Option<LayerKv>>,
}

impl WhisperCache {
    /// An empty cache for a decoder with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        WhisperCache { self_attn: KvCache::new(num_layers), cross: vec![None; num_layers] }
    }

    /// A cache whose self-attention already holds a prefix (prefix tuning: PEFT puts the virtual
    /// tokens in the decoder's self-attention cache and leaves cross-attention empty). The
    /// decoder tokens then take positions after it.
    pub fn from_prefix(self_attn: KvCache) -> Self {
        let layers = self_attn.num_layers();
        WhisperCache { self_attn, cross: vec![None; layers] }
    }

    /// How many decoder positions are cached (the position of the next token).
    pub fn seen(&self) -> usize {
        self.self_attn.seen()
    }

    /// Layer `i`'s cross-attention keys and values, computed by `make` the first time.
    pub(crate) fn cross_or_insert(&mut self, i: usize, make: impl FnOnce() -> LayerKv) -> LayerKv {
        if self.cross.len() <= i {
            self.cross.resize(i + 1, None);
        }
        self.cross[i].get_or_insert_with(make).clone()
    }
}

impl SelectRows for WhisperCache {
    fn select_rows(self, rows: Tensor<1, Int>) -> Self {
        let cross = self
            .cross
            .into_iter()
            .map(|l| l.map(|l| LayerKv { key: l.key.select(0, rows.clone()), value: l.value.select(0, rows.clone()) }))
            .collect();
        WhisperCache { self_attn: self.self_attn.select_rows(rows), cross }
    }
}
