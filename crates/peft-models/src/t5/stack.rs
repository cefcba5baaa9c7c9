//! `T5Stack`: the encoder and the decoder.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Int, Tensor};
use peft_core::SiteMut;

use super::block::{BlockInputs, T5Block};
use super::config::T5Config;
use super::position::{causal_bias, padding_bias};
use crate::cache::LayerKv;
use crate::generation::{EncoderDecoderCache, EncoderOutput};
use crate::layers::{RmsNorm, full_key_mask};

/// The decoder's cache: self-attention keys and values of the tokens seen so far, and each
/// block's cross-attention keys and values of the encoder output, computed on the first step.
/// With a prefix (prefix tuning) the decoder's relative positions count from the prefix's start.
pub type T5Cache = EncoderDecoderCache;

/// transformers' `T5Stack` without its embedding (the model's `shared` table serves both stacks):
/// blocks, then the final norm.
#[derive(Module, Debug)]
pub struct T5Stack {
    /// The blocks; block 0 holds the relative position table every block uses.
    pub block: Vec<T5Block>,
    /// The norm after the last block.
    pub final_layer_norm: RmsNorm,
    /// Dropout on the input embeddings and the output (training only).
    pub dropout: Dropout,
    /// Decoder (causal self-attention, cross-attention) or encoder.
    pub is_decoder: bool,
}

impl T5Stack {
    /// The encoder (`decoder` false, `num_layers` blocks) or the decoder (`num_decoder_layers`).
    pub fn new(config: &T5Config, decoder: bool, device: &Device) -> Self {
        let blocks = if decoder { config.num_decoder_layers() } else { config.num_layers };
        T5Stack {
            block: (0..blocks).map(|i| T5Block::new(config, i, decoder, device)).collect(),
            final_layer_norm: RmsNorm::new(config.d_model, config.layer_norm_epsilon, device),
            dropout: DropoutConfig::new(config.dropout_rate).init(),
            is_decoder: decoder,
        }
    }

    /// Block 0's relative position bias (zeros without a table, as transformers).
    fn position_bias(&self, len: usize, keys: usize, seen: usize, device: &Device) -> Tensor<4> {
        let table = self.block.first().and_then(T5Block::self_attention);
        let heads = table.map_or(1, |a| a.num_heads);
        table
            .and_then(|a| a.position_bias(len, keys, seen, !self.is_decoder, device))
            .unwrap_or_else(|| Tensor::zeros([1, heads, len, keys], device))
    }

    /// Runs the encoder on input embeddings: bidirectional attention, padded keys
    /// (`attention_mask` 0) never attended to.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, d_model]`
    /// - `attention_mask`: `[batch, len]`
    /// - output: `[batch, len, d_model]`
    pub fn encode(&self, embeds: Tensor<3>, attention_mask: Option<&Tensor<2, Int>>) -> Tensor<3> {
        let [_, len, _] = embeds.dims();
        let device = embeds.device();
        let mut bias = self.position_bias(len, len, 0, &device);
        if let Some(mask) = attention_mask {
            bias = bias + padding_bias(mask);
        }
        let mut x = self.dropout.forward(embeds);
        for block in &self.block {
            x = block.forward(x, BlockInputs { self_bias: &bias, cross: None }, |k, v| (k, v));
        }
        self.dropout.forward(self.final_layer_norm.forward(x))
    }

    /// Runs the decoder on input embeddings against `encoder`, after the positions in `cache`
    /// (appending the new ones): causal self-attention at positions `cache.seen()..`, with
    /// relative positions counted from the cache's start.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, d_model]`
    /// - `attention_mask`: `[batch, len]`, the new decoder tokens only (the cache keeps its own)
    /// - output: `[batch, len, d_model]`
    pub fn decode(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, encoder: &EncoderOutput, mut cache: Option<&mut T5Cache>) -> Tensor<3> {
        let [batch, len, _] = embeds.dims();
        let device = embeds.device();
        let seen = cache.as_ref().map_or(0, |c| c.seen());
        let key_mask = full_key_mask(cache.as_ref().map(|c| &c.self_attn), attention_mask, batch, len, &device);
        let self_bias = self.position_bias(len, seen + len, seen, &device) + causal_bias(key_mask.as_ref(), seen, len, &device);
        let cross_mask = encoder.mask.as_ref().map(padding_bias);
        let mut x = self.dropout.forward(embeds);
        for (i, block) in self.block.iter().enumerate() {
            let cross = block.cross_attention().map(|attn| {
                let make = || {
                    let (key, value) = attn.keys_values(encoder.hidden.clone());
                    LayerKv { key, value }
                };
                let kv = match cache.as_deref_mut() {
                    Some(cache) => cache.cross_or_insert(i, make),
                    None => make(),
                };
                (kv.key, kv.value, cross_mask.as_ref())
            });
            let inputs = BlockInputs { self_bias: &self_bias, cross };
            x = match cache.as_deref_mut() {
                Some(cache) => block.forward(x, inputs, |k, v| cache.self_attn.append(i, k, v)),
                None => block.forward(x, inputs, |k, v| (k, v)),
            };
        }
        if let Some(cache) = cache {
            cache.self_attn.advance(len, key_mask);
        }
        self.dropout.forward(self.final_layer_norm.forward(x))
    }

    /// Lists the stack's sites under `prefix` (`encoder.` or `decoder.`).
    pub(crate) fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        for (i, block) in self.block.iter_mut().enumerate() {
            block.visit_sites(&format!("{prefix}block.{i}"), f);
        }
    }
}
