//! T5 attention: unscaled dot products plus a learned relative position bias.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use crate::layers::attention_probs;
use burn::tensor::{Device, Tensor};
use peft_core::{AdaptedEmbedding, AdaptedLinear, SiteMut};

use super::config::T5Config;
use super::position::bucket_ids;

/// transformers' `T5Attention`: `softmax(q kᵀ + position_bias + mask) v`, without the
/// `1 / sqrt(d_kv)` scaling (T5 folds it into the initialisation).
///
/// Used as self-attention (`SelfAttention`, with `relative_attention_bias` in block 0 only; later
/// blocks reuse block 0's bias) and as cross-attention (`EncDecAttention`, no position bias).
#[derive(Module, Debug)]
pub struct T5Attention {
    /// `d_model -> num_heads * d_kv`.
    pub q: AdaptedLinear,
    /// `d_model -> num_heads * d_kv`.
    pub k: AdaptedLinear,
    /// `d_model -> num_heads * d_kv`.
    pub v: AdaptedLinear,
    /// `num_heads * d_kv -> d_model`.
    pub o: AdaptedLinear,
    /// `[relative_attention_num_buckets, num_heads]`: one bias per bucket and head.
    pub relative_attention_bias: Option<AdaptedEmbedding>,
    /// Dropout on the attention weights (training only).
    pub dropout: Dropout,
    /// Heads.
    pub num_heads: usize,
    /// Width of a head.
    pub d_kv: usize,
    /// Buckets of the relative position bias.
    pub num_buckets: usize,
    /// Distance from which positions share the last bucket.
    pub max_distance: usize,
}

impl T5Attention {
    /// A new layer for `config`, with a relative position table when `relative_bias`, weights
    /// drawn as transformers initialises them.
    pub fn new(config: &T5Config, relative_bias: bool, device: &Device) -> Self {
        let (d, inner, f) = (config.d_model, config.num_heads * config.d_kv, config.initializer_factor);
        let linear = |i, o, std| super::linear(i, o, false, std, device);
        T5Attention {
            q: linear(d, inner, f * ((d * config.d_kv) as f64).powf(-0.5)),
            k: linear(d, inner, f * (d as f64).powf(-0.5)),
            v: linear(d, inner, f * (d as f64).powf(-0.5)),
            o: linear(inner, d, f * (inner as f64).powf(-0.5)),
            relative_attention_bias: relative_bias
                .then(|| super::embedding(config.relative_attention_num_buckets, config.num_heads, f * (d as f64).powf(-0.5), device)),
            dropout: DropoutConfig::new(config.dropout_rate).init(),
            num_heads: config.num_heads,
            d_kv: config.d_kv,
            num_buckets: config.relative_attention_num_buckets,
            max_distance: config.relative_attention_max_distance,
        }
    }

    /// Splits a projection into heads.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, num_heads * d_kv]`
    /// - output: `[batch, num_heads, len, d_kv]`
    fn heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [batch, len, _] = x.dims();
        x.reshape([batch, len, self.num_heads, self.d_kv]).swap_dims(1, 2)
    }

    /// Keys and values of `source` (the layer's own input, or the encoder output for
    /// cross-attention).
    ///
    /// # Shapes
    /// - `source`: `[batch, len, d_model]`
    /// - outputs: `[batch, num_heads, len, d_kv]` each
    pub fn keys_values(&self, source: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
        (self.heads(self.k.forward(source.clone())), self.heads(self.v.forward(source)))
    }

    /// The relative position bias for `len` queries at positions `seen..seen + len` over `keys`
    /// keys from position 0, or `None` without a `relative_attention_bias` table.
    ///
    /// # Shapes
    /// - output: `[1, num_heads, len, keys]`
    pub fn position_bias(&self, len: usize, keys: usize, seen: usize, bidirectional: bool, device: &Device) -> Option<Tensor<4>> {
        let table = self.relative_attention_bias.as_ref()?;
        let ids = bucket_ids(len, keys, seen, bidirectional, self.num_buckets, self.max_distance, device);
        // [len, keys, heads] -> [1, heads, len, keys]; in f32 like the masks it is added to,
        // whatever the table's type.
        Some(table.forward(ids).permute([2, 0, 1]).unsqueeze::<4>().cast(burn::tensor::FloatDType::F32))
    }

    /// Attends from `x` to `key`/`value` with an additive `bias` (position bias plus masks).
    ///
    /// # Shapes
    /// - `x`: `[batch, len, d_model]`
    /// - `key`, `value`: `[batch, num_heads, keys, d_kv]`
    /// - `bias`: broadcastable to `[batch, num_heads, len, keys]`
    /// - output: `[batch, len, d_model]`
    pub fn attend(&self, x: Tensor<3>, key: Tensor<4>, value: Tensor<4>, bias: Option<&Tensor<4>>) -> Tensor<3> {
        let [batch, len, _] = x.dims();
        let q = self.heads(self.q.forward(x));
        let scores = q.matmul(key.swap_dims(2, 3));
        let probs = self.dropout.forward(attention_probs(scores, bias, 3));
        let out = probs.matmul(value).swap_dims(1, 2).reshape([batch, len, self.num_heads * self.d_kv]);
        self.o.forward(out)
    }

    /// Lists the layer's sites under `prefix` (`...SelfAttention`).
    pub(crate) fn visit_sites(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f(&format!("{prefix}.q"), SiteMut::Linear(&mut self.q));
        f(&format!("{prefix}.k"), SiteMut::Linear(&mut self.k));
        f(&format!("{prefix}.v"), SiteMut::Linear(&mut self.v));
        f(&format!("{prefix}.o"), SiteMut::Linear(&mut self.o));
        if let Some(table) = &mut self.relative_attention_bias {
            f(&format!("{prefix}.relative_attention_bias"), SiteMut::Embedding(table));
        }
    }
}
