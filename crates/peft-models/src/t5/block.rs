//! The feed-forward network, the pre-norm residual sub-layers and a T5 block.
#![allow(non_snake_case)] // fields are transformers' module names (`SelfAttention`, `DenseReluDense`)

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::{gelu, gelu_approximate, relu, silu};
use burn::tensor::{Device, Tensor};
use peft_core::{AdaptedLinear, SiteMut};

use super::attention::T5Attention;
use super::config::{FfActivation, T5Config};
use crate::layers::RmsNorm;

/// transformers' `T5DenseActDense` (`wo(act(wi(x)))`) or, when gated (T5 v1.1, mT5),
/// `T5DenseGatedActDense` (`wo(act(wi_0(x)) * wi_1(x))`).
#[derive(Module, Debug)]
pub struct T5DenseReluDense {
    /// `d_model -> d_ff` (ungated).
    pub wi: Option<AdaptedLinear>,
    /// `d_model -> d_ff`, through the activation (gated).
    pub wi_0: Option<AdaptedLinear>,
    /// `d_model -> d_ff`, the linear branch (gated).
    pub wi_1: Option<AdaptedLinear>,
    /// `d_ff -> d_model`.
    pub wo: AdaptedLinear,
    /// Dropout before `wo` (training only).
    pub dropout: Dropout,
    /// The activation.
    #[module(skip)]
    pub activation: FfActivation,
}

impl T5DenseReluDense {
    /// A new feed-forward network for a validated `config` (an invalid `feed_forward_proj`
    /// falls back to ungated ReLU here; [`T5Config::validate`] reports it).
    pub fn new(config: &T5Config, device: &Device) -> Self {
        let (gated, activation) = config.feed_forward().unwrap_or((false, FfActivation::Relu));
        let (d, ff, f) = (config.d_model, config.d_ff, config.initializer_factor);
        let input = || super::linear(d, ff, false, f * (d as f64).powf(-0.5), device);
        T5DenseReluDense {
            wi: (!gated).then(input),
            wi_0: gated.then(input),
            wi_1: gated.then(input),
            wo: super::linear(ff, d, false, f * (ff as f64).powf(-0.5), device),
            dropout: DropoutConfig::new(config.dropout_rate).init(),
            activation,
        }
    }

    /// The feed-forward network.
    ///
    /// # Shapes
    /// - `x`: `[batch, len, d_model]`, and the same out.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let act = |t: Tensor<3>| match self.activation {
            FfActivation::Relu => relu(t),
            FfActivation::Gelu => gelu(t),
            FfActivation::GeluNew => gelu_approximate(t),
            FfActivation::Silu => silu(t),
        };
        let hidden = match (&self.wi, &self.wi_0, &self.wi_1) {
            (_, Some(w0), Some(w1)) => act(w0.forward(x.clone())) * w1.forward(x),
            (Some(wi), _, _) => act(wi.forward(x)),
            // `new` always builds one of the two; a module emptied by hand passes zeros on.
            _ => return x.zeros_like(),
        };
        self.wo.forward(self.dropout.forward(hidden))
    }

    fn visit_sites(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        for (name, layer) in [("wi", &mut self.wi), ("wi_0", &mut self.wi_0), ("wi_1", &mut self.wi_1)] {
            if let Some(layer) = layer {
                f(&format!("{prefix}.{name}"), SiteMut::Linear(layer));
            }
        }
        f(&format!("{prefix}.wo"), SiteMut::Linear(&mut self.wo));
    }
}

/// One pre-norm residual sub-layer of a block, `x + dropout(f(layer_norm(x)))`, where `f` is the
/// one part present: transformers' `T5LayerSelfAttention` (`SelfAttention`),
/// `T5LayerCrossAttention` (`EncDecAttention`) or `T5LayerFF` (`DenseReluDense`).
///
/// One struct with optional parts (rather than an enum) keeps the module paths transformers'
/// (`layer.1.layer_norm.weight`), which checkpoint keys rely on.
#[derive(Module, Debug)]
pub struct T5SubLayer {
    /// Self-attention (`layer.0`).
    pub SelfAttention: Option<T5Attention>,
    /// Cross-attention to the encoder (decoder `layer.1`).
    pub EncDecAttention: Option<T5Attention>,
    /// Feed-forward (the last sub-layer).
    pub DenseReluDense: Option<T5DenseReluDense>,
    /// T5 LayerNorm: RMS normalisation without mean or bias.
    pub layer_norm: RmsNorm,
    /// Dropout on the sub-layer's output (training only).
    pub dropout: Dropout,
}

impl T5SubLayer {
    fn with(config: &T5Config, device: &Device) -> Self {
        T5SubLayer {
            SelfAttention: None,
            EncDecAttention: None,
            DenseReluDense: None,
            layer_norm: RmsNorm::new(config.d_model, config.layer_norm_epsilon, device),
            dropout: DropoutConfig::new(config.dropout_rate).init(),
        }
    }
}

/// transformers' `T5Block`: self-attention, cross-attention (decoder only), feed-forward.
#[derive(Module, Debug)]
pub struct T5Block {
    /// The sub-layers, at paths `layer.0`, `layer.1` (and `layer.2`).
    pub layer: Vec<T5SubLayer>,
}

/// What a block attends to besides itself.
pub(crate) struct BlockInputs<'a> {
    /// Position bias plus the self-attention mask, `[batch or 1, heads, len, keys]`.
    pub self_bias: &'a Tensor<4>,
    /// Cross-attention keys and values of this block and their mask (decoder only).
    pub cross: Option<(Tensor<4>, Tensor<4>, Option<&'a Tensor<4>>)>,
}

impl T5Block {
    /// Block `index` of an encoder (`decoder` false) or decoder stack.
    pub fn new(config: &T5Config, index: usize, decoder: bool, device: &Device) -> Self {
        let mut layer = Vec::new();
        layer.push(T5SubLayer { SelfAttention: Some(T5Attention::new(config, index == 0, device)), ..T5SubLayer::with(config, device) });
        if decoder {
            layer.push(T5SubLayer { EncDecAttention: Some(T5Attention::new(config, false, device)), ..T5SubLayer::with(config, device) });
        }
        layer.push(T5SubLayer { DenseReluDense: Some(T5DenseReluDense::new(config, device)), ..T5SubLayer::with(config, device) });
        T5Block { layer }
    }

    /// The self-attention of the block.
    pub fn self_attention(&self) -> Option<&T5Attention> {
        self.layer.first().and_then(|l| l.SelfAttention.as_ref())
    }

    /// The cross-attention of a decoder block.
    pub fn cross_attention(&self) -> Option<&T5Attention> {
        self.layer.iter().find_map(|l| l.EncDecAttention.as_ref())
    }

    /// Runs the block. `self_kv` turns the normed input's keys and values into those attended to
    /// (appending them to a cache, for a decoder with one).
    pub(crate) fn forward(&self, x: Tensor<3>, inputs: BlockInputs<'_>, mut self_kv: impl FnMut(Tensor<4>, Tensor<4>) -> (Tensor<4>, Tensor<4>)) -> Tensor<3> {
        let mut x = x;
        let mut cross = inputs.cross;
        for sub in &self.layer {
            let normed = sub.layer_norm.forward(x.clone());
            let out = if let Some(attn) = &sub.SelfAttention {
                let (k, v) = attn.keys_values(normed.clone());
                let (k, v) = self_kv(k, v);
                attn.attend(normed, k, v, Some(inputs.self_bias))
            } else if let Some(attn) = &sub.EncDecAttention {
                match cross.take() {
                    Some((k, v, mask)) => attn.attend(normed, k, v, mask),
                    None => continue, // a decoder block run without an encoder output
                }
            } else if let Some(ff) = &sub.DenseReluDense {
                ff.forward(normed)
            } else {
                continue;
            };
            x = x + sub.dropout.forward(out);
        }
        x
    }

    /// Lists the block's sites under `prefix` (`encoder.block.0`).
    pub(crate) fn visit_sites(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        for (i, sub) in self.layer.iter_mut().enumerate() {
            let at = format!("{prefix}.layer.{i}");
            if let Some(attn) = &mut sub.SelfAttention {
                attn.visit_sites(&format!("{at}.SelfAttention"), f);
            }
            if let Some(attn) = &mut sub.EncDecAttention {
                attn.visit_sites(&format!("{at}.EncDecAttention"), f);
            }
            if let Some(ff) = &mut sub.DenseReluDense {
                ff.visit_sites(&format!("{at}.DenseReluDense"), f);
            }
        }
    }
}
