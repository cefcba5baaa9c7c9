//! The text decoder: token and learned position embeddings, pre-LN layers with causal
//! self-attention and cross-attention to the encoder.

use burn::module::Module;
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedEmbedding, AdaptedLinear, Error, Result, SiteMut};

use super::attention::{WhisperAttention, causal_bias, padding_bias};
use super::WhisperCache;
use super::config::{LAYER_NORM_EPS, WhisperConfig};
use super::encoder::PositionTable;
use crate::layers::{LayerNorm, full_key_mask};
use crate::cache::{KvCache, LayerKv};
use crate::generation::EncoderOutput;

/// transformers' `WhisperDecoderLayer`: self-attention, cross-attention, MLP, each pre-normed
/// with a residual.
#[derive(Module, Debug)]
pub struct WhisperDecoderLayer {
    /// Causal self-attention.
    pub self_attn: WhisperAttention,
    /// Norm before self-attention.
    pub self_attn_layer_norm: LayerNorm,
    /// Attention to the encoder output.
    pub encoder_attn: WhisperAttention,
    /// Norm before cross-attention.
    pub encoder_attn_layer_norm: LayerNorm,
    /// `d_model -> decoder_ffn_dim`.
    pub fc1: AdaptedLinear,
    /// `decoder_ffn_dim -> d_model`.
    pub fc2: AdaptedLinear,
    /// Norm before the MLP.
    pub final_layer_norm: LayerNorm,
}

impl WhisperDecoderLayer {
    /// A new layer for `config`.
    pub fn new(config: &WhisperConfig, device: &Device) -> Self {
        let (d, ffn, heads) = (config.d_model, config.decoder_ffn_dim, config.decoder_attention_heads);
        WhisperDecoderLayer {
            self_attn: WhisperAttention::new(config, heads, device),
            self_attn_layer_norm: LayerNorm::new(d, LAYER_NORM_EPS, device),
            encoder_attn: WhisperAttention::new(config, heads, device),
            encoder_attn_layer_norm: LayerNorm::new(d, LAYER_NORM_EPS, device),
            fc1: super::linear(d, ffn, true, config, device),
            fc2: super::linear(ffn, d, true, config, device),
            final_layer_norm: LayerNorm::new(d, LAYER_NORM_EPS, device),
        }
    }

    fn forward(&self, x: Tensor<3>, self_bias: Option<&Tensor<4>>, cross: (&LayerKv, Option<&Tensor<4>>), cache: Option<(&mut KvCache, usize)>) -> Tensor<3> {
        let h = x.clone() + self.self_attn.forward_self(self.self_attn_layer_norm.forward(x), self_bias, cache);
        let h = h.clone() + self.encoder_attn.attend(self.encoder_attn_layer_norm.forward(h), cross.0, cross.1);
        h.clone() + self.fc2.forward(gelu(self.fc1.forward(self.final_layer_norm.forward(h))))
    }
}

/// transformers' `WhisperDecoder` (no head): `embed_tokens(ids) + embed_positions[seen..]`, the
/// layers, a final LayerNorm.
#[derive(Module, Debug)]
pub struct WhisperDecoder {
    /// The token embedding table, `[vocab_size, d_model]`.
    pub embed_tokens: AdaptedEmbedding,
    /// Learned positions, `[max_target_positions, d_model]`.
    pub embed_positions: PositionTable,
    /// The layers.
    pub layers: Vec<WhisperDecoderLayer>,
    /// The final norm.
    pub layer_norm: LayerNorm,
}

impl WhisperDecoder {
    /// A new decoder for a validated `config`, weights drawn from `N(0, init_std)`.
    pub fn new(config: &WhisperConfig, device: &Device) -> Self {
        let positions = super::embedding(config.max_target_positions, config.d_model, config, device).base_layer.weight;
        WhisperDecoder {
            embed_tokens: super::embedding(config.vocab_size, config.d_model, config, device),
            embed_positions: PositionTable { weight: positions },
            layers: (0..config.decoder_layers).map(|_| WhisperDecoderLayer::new(config, device)).collect(),
            layer_norm: LayerNorm::new(config.d_model, LAYER_NORM_EPS, device),
        }
    }

    /// Token embeddings (with any embedding adapter), for prompt methods that prepend their own
    /// vectors before calling [`WhisperDecoder::forward_embeds`].
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, len]`
    /// - output: `[batch, len, d_model]`
    pub fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        self.embed_tokens.forward(input_ids)
    }

    /// Fails with [`Error::InvalidState`] when `len` tokens after `seen` cached ones run past the
    /// learned position table.
    pub fn check_length(&self, seen: usize, len: usize) -> Result<()> {
        let positions = self.embed_positions.weight.dims()[0];
        if seen + len > positions {
            return Err(Error::InvalidState(format!(
                "the decoder holds {positions} positions (max_target_positions) but was given {len} tokens after {seen} \
                 cached ones; shorten the decoder input or the number of generated tokens"
            )));
        }
        Ok(())
    }

    /// Runs the decoder on input embeddings against an encoding; returns the final hidden states.
    ///
    /// The tokens take positions `seen..seen + len` where `seen` is the cache's length (0
    /// without a cache). `attention_mask` is 1 for real tokens and 0 for padding; attention is
    /// causal. With a cache, the tokens also attend to the cached ones and are appended; the
    /// cross-attention keys and values are computed on the first call and reused after.
    ///
    /// Fails as [`WhisperDecoder::check_length`] does.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, d_model]`
    /// - `attention_mask`: `[batch, len]` (the new tokens only)
    /// - output: `[batch, len, d_model]`
    pub fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, encoder: &EncoderOutput, cache: Option<&mut WhisperCache>) -> Result<Tensor<3>> {
        self.check_length(cache.as_ref().map_or(0, |c| c.seen()), embeds.dims()[1])?;
        Ok(self.forward_embeds_unchecked(embeds, attention_mask, encoder, cache))
    }

    /// [`WhisperDecoder::forward_embeds`] without the length check: positions past the table
    /// reuse its last row (for the infallible [`crate::generation::Seq2SeqLm`] contract).
    pub(crate) fn forward_embeds_unchecked(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, encoder: &EncoderOutput, mut cache: Option<&mut WhisperCache>) -> Tensor<3> {
        let [batch, len, d_model] = embeds.dims();
        let device = embeds.device();
        let seen = cache.as_ref().map_or(0, |c| c.seen());
        let key_mask = full_key_mask(cache.as_ref().map(|c| &c.self_attn), attention_mask, batch, len, &device);
        let self_bias = causal_bias(key_mask.as_ref(), seen, len, &device);
        let cross_bias = encoder.mask.as_ref().map(padding_bias);
        let mut x = embeds + self.embed_positions.rows(seen, len).reshape([1, len, d_model]);
        for (i, layer) in self.layers.iter().enumerate() {
            let make = || layer.encoder_attn.key_value(encoder.hidden.clone());
            let cross = match cache.as_deref_mut() {
                Some(c) => c.cross_or_insert(i, make),
                None => make(),
            };
            x = layer.forward(x, self_bias.as_ref(), (&cross, cross_bias.as_ref()), cache.as_deref_mut().map(|c| (&mut c.self_attn, i)));
        }
        if let Some(cache) = cache {
            cache.self_attn.advance(len, key_mask);
        }
        self.layer_norm.forward(x)
    }

    /// Lists the decoder's adapter sites under `prefix` (`"decoder."` or `"model.decoder."`).
    pub(crate) fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f(&format!("{prefix}embed_tokens"), SiteMut::Embedding(&mut self.embed_tokens));
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let at = |name: &str| format!("{prefix}layers.{i}.{name}");
            super::visit_attention(&at("self_attn"), &mut layer.self_attn, f);
            super::visit_attention(&at("encoder_attn"), &mut layer.encoder_attn, f);
            f(&at("fc1"), SiteMut::Linear(&mut layer.fc1));
            f(&at("fc2"), SiteMut::Linear(&mut layer.fc2));
        }
    }
}
