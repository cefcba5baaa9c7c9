//! Keys and values of the tokens already seen, shared by every decoder: generation and prefix tuning.

use burn::tensor::{Int, Tensor};

/// One layer's keys and values.
///
/// # Shapes
/// - `key`, `value`: `[batch, num_key_value_heads, seen, head_dim]` (keys already rotated)
#[derive(Clone, Debug)]
pub struct LayerKv {
    /// Keys, after RoPE.
    pub key: Tensor<4>,
    /// Values.
    pub value: Tensor<4>,
}

/// The keys and values of every layer for the tokens seen so far, and which of them are padding.
///
/// A forward with a cache attends to the cached keys as well as its own, appends its own to the
/// cache, and places its tokens at positions `seen..seen + len`. The same type carries an
/// *already-seen prefix* that was never run through the model (prefix tuning's virtual tokens):
/// build it with [`KvCache::from_prefix`]; the real tokens then sit after it, as in transformers
/// where `past_key_values` shifts `cache_position`.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    /// `[batch, seen]`, 1 for a real key, 0 for padding; `None` while every key is real.
    mask: Option<Tensor<2, Int>>,
    seen: usize,
}

impl KvCache {
    /// An empty cache for a model with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        KvCache { layers: vec![None; num_layers], mask: None, seen: 0 }
    }

    /// A cache holding a prefix of `seen` keys and values per layer (prefix tuning), with an
    /// optional padding mask `[batch, seen]` (1 = attend).
    ///
    /// Every layer's tensors must have the same `seen` length; the model checks their head
    /// counts and widths when it uses them.
    pub fn from_prefix(layers: Vec<LayerKv>, mask: Option<Tensor<2, Int>>) -> Self {
        let seen = layers.first().map_or(0, |l| l.key.dims()[2]);
        KvCache { layers: layers.into_iter().map(Some).collect(), mask, seen }
    }

    /// How many positions the cache holds (the position of the next token).
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Layer `i`'s keys and values, if any were stored.
    pub fn layer(&self, i: usize) -> Option<&LayerKv> {
        self.layers.get(i).and_then(Option::as_ref)
    }

    /// The padding mask of the cached keys, `[batch, seen]` (`None`: all real).
    pub fn mask(&self) -> Option<&Tensor<2, Int>> {
        self.mask.as_ref()
    }

    /// Appends layer `i`'s new keys and values and returns everything the layer attends to.
    pub fn append(&mut self, i: usize, key: Tensor<4>, value: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        if self.layers.len() <= i {
            self.layers.resize(i + 1, None);
        }
        let (key, value) = match self.layers[i].take() {
            // A prefix learned in f32 joins a half-precision model's keys in their type.
            Some(past) => {
                let dtype = key.dtype();
                (Tensor::cat(vec![past.key.cast(dtype), key], 2), Tensor::cat(vec![past.value.cast(dtype), value], 2))
            }
            None => (key, value),
        };
        self.layers[i] = Some(LayerKv { key: key.clone(), value: value.clone() });
        (key, value)
    }

    /// Records that `len` new positions were added with their mask (`None`: all real).
    pub fn advance(&mut self, len: usize, full_mask: Option<Tensor<2, Int>>) {
        self.seen += len;
        self.mask = full_mask;
    }
}

impl KvCache {
    /// Keeps the batch rows `rows` (in that order): beam search continues the chosen beams.
    ///
    /// # Shapes
    /// - `rows`: `[new_batch]`
    pub fn select_rows(self, rows: Tensor<1, Int>) -> Self {
        let layers = self
            .layers
            .into_iter()
            .map(|l| l.map(|l| LayerKv { key: l.key.select(0, rows.clone()), value: l.value.select(0, rows.clone()) }))
            .collect();
        KvCache { layers, mask: self.mask.map(|m| m.select(0, rows)), seen: self.seen }
    }
}
