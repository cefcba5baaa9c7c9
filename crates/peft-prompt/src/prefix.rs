//! Prefix tuning: learned keys and values in front of every attention layer.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use peft_core::cache::{KvCache, LayerKv};
use peft_core::{Error, ModelAdapter, ModelInputs, PrepareContext, Result};

use crate::PROMPT_EMBEDDINGS;

/// How the prefix table splits into layers, heads and head widths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixLayout {
    /// Transformer layers.
    pub num_layers: usize,
    /// Key/value heads per layer (`num_attention_heads` of the saved config: the model's
    /// `num_key_value_heads` for grouped-query attention).
    pub num_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl PrefixLayout {
    /// `num_layers * 2 * num_heads * head_dim`: one virtual token's keys and values in every layer.
    pub fn width(&self) -> usize {
        self.num_layers * 2 * self.num_heads * self.head_dim
    }
}

/// The optional MLP of `prefix_projection`: `Linear(token_dim, hidden) -> tanh -> Linear(hidden, width)`.
#[derive(Module, Debug)]
pub struct PrefixProjection {
    /// `token_dim -> encoder_hidden_size`.
    pub first: Linear,
    /// `encoder_hidden_size -> num_layers * 2 * token_dim`.
    pub second: Linear,
}

/// Prefix tuning's encoder (the Python library's `PrefixEncoder`): per virtual token, the keys and
/// values of every layer, given to the model as an already-seen cache ([`KvCache::from_prefix`]).
///
/// The table's row `v` holds, for layer `l`, key (`k = 0`) or value (`k = 1`), head `h` and width
/// `d`, the element `((2 l + k) * num_heads + h) * head_dim + d`, as the Python library views it.
///
/// # Shapes
/// - `embedding`: `[num_virtual_tokens, num_layers * 2 * num_heads * head_dim]`, or
///   `[num_virtual_tokens, token_dim]` with a projection
#[derive(Module, Debug)]
pub struct PrefixEncoder {
    /// The prefix table (or, with a projection, the virtual tokens' inputs to it).
    pub embedding: Param<Tensor<2>>,
    /// The `prefix_projection` MLP, when training with one.
    pub transform: Option<PrefixProjection>,
    #[module(skip)]
    layout: PrefixLayout,
}

impl PrefixEncoder {
    /// A prefix table drawn from N(0, 1) (`init_weights` null), or zeros (`"zero"`).
    pub fn new(num_virtual_tokens: usize, layout: PrefixLayout, zero: bool, device: &Device) -> Self {
        let shape = [num_virtual_tokens, layout.width()];
        let table = if zero { Tensor::zeros(shape, device) } else { Tensor::random(shape, Distribution::Normal(0.0, 1.0), device) };
        PrefixEncoder { embedding: Param::from_tensor(table), transform: None, layout }
    }

    /// A prefix produced by an MLP from `token_dim`-wide virtual-token embeddings
    /// (`prefix_projection` true); with `zero`, the MLP's last layer starts at zero.
    pub fn with_projection(num_virtual_tokens: usize, token_dim: usize, hidden: usize, layout: PrefixLayout, zero: bool, device: &Device) -> Self {
        let table = Tensor::random([num_virtual_tokens, token_dim], Distribution::Normal(0.0, 1.0), device);
        let first = LinearConfig::new(token_dim, hidden).init(device);
        let mut second = LinearConfig::new(hidden, layout.width()).init(device);
        if zero {
            second.weight = Param::from_tensor(second.weight.val().zeros_like());
            second.bias = second.bias.map(|b| Param::from_tensor(b.val().zeros_like()));
        }
        PrefixEncoder { embedding: Param::from_tensor(table), transform: Some(PrefixProjection { first, second }), layout }
    }

    /// A prefix holding `table` (a saved `prompt_embeddings`).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the table's width is not `layout.width()`.
    pub fn from_table(table: Tensor<2>, layout: PrefixLayout) -> Result<Self> {
        let [tokens, width] = table.dims();
        if width != layout.width() {
            return Err(Error::ShapeMismatch {
                path: "prompt_encoder (prefix tuning)".into(),
                tensor: PROMPT_EMBEDDINGS.into(),
                expected: vec![tokens, layout.width()],
                actual: vec![tokens, width],
            });
        }
        Ok(PrefixEncoder { embedding: Param::from_tensor(table), transform: None, layout })
    }

    /// The layout of the table.
    pub fn layout(&self) -> PrefixLayout {
        self.layout
    }

    /// The prefix: the table itself, or the projection of the virtual tokens.
    ///
    /// # Shapes
    /// - output: `[num_virtual_tokens, num_layers * 2 * num_heads * head_dim]`
    pub fn prefix(&self) -> Tensor<2> {
        let x = self.embedding.val();
        match &self.transform {
            None => x,
            Some(t) => t.second.forward(tanh(t.first.forward(x))),
        }
    }

    /// The per-layer keys and values for `batch` rows.
    ///
    /// # Shapes
    /// - each key and value: `[batch, num_heads, num_virtual_tokens, head_dim]`
    pub fn layers(&self, batch: usize) -> Vec<LayerKv> {
        let PrefixLayout { num_layers, num_heads, head_dim } = self.layout;
        let prefix = self.prefix();
        let tokens = prefix.dims()[0];
        // [tokens, layers * 2, heads, head_dim] -> [layers * 2, heads, tokens, head_dim]
        let kv = prefix.reshape([tokens, num_layers * 2, num_heads, head_dim]).permute([1, 2, 0, 3]);
        let one = |i: usize| kv.clone().narrow(0, i, 1).repeat_dim(0, batch);
        (0..num_layers).map(|l| LayerKv { key: one(2 * l), value: one(2 * l + 1) }).collect()
    }
}

impl ModelAdapter for PrefixEncoder {
    fn prepare(&self, mut inputs: ModelInputs, context: &PrepareContext<'_>) -> Result<ModelInputs> {
        if inputs.past_key_values.is_some() {
            return Err(Error::Unsupported {
                what: "prefix tuning after keys and values already in `past_key_values`".into(),
                supported: "a forward without a cache: the prefix is the cache".into(),
            });
        }
        let batch = inputs.batch_size().ok_or_else(|| Error::InvalidState("prefix tuning needs `input_ids` or `inputs_embeds` to size the batch".into()))?;
        if let Some(dims) = context.dims {
            let expected = (dims.num_layers, dims.num_key_value_heads, dims.head_dim);
            let PrefixLayout { num_layers, num_heads, head_dim } = self.layout;
            if (num_layers, num_heads, head_dim) != expected {
                return Err(Error::ShapeMismatch {
                    path: "prompt_encoder (prefix tuning)".into(),
                    tensor: "layers x key/value heads x head_dim".into(),
                    expected: vec![expected.0, expected.1, expected.2],
                    actual: vec![num_layers, num_heads, head_dim],
                });
            }
        }
        let mut layers = self.layers(batch);
        if context.dims.is_some_and(|d| d.num_transformer_submodules == 2) {
            layers = decoder_layers(layers);
        }
        let tokens = self.embedding.dims()[0];
        let device = self.embedding.val().device();
        inputs.past_key_values = Some(KvCache::from_prefix(layers, Some(Tensor::<2, Int>::ones([batch, tokens], &device))));
        Ok(inputs)
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        vec![(PROMPT_EMBEDDINGS.into(), self.prefix().into_data())]
    }
}

/// The decoder self-attention prefixes of an encoder-decoder, as the Python library 0.21.2 lays
/// them out: it repeats the `2 * num_layers` key/value slices, cuts them into groups of four
/// (self key, self value, cross key, cross value) per decoder layer and then drops every cross
/// part (the encoder and cross-attention get no prefix). Decoder layer `i` thus gets the keys and
/// values of table layer `2 i mod num_layers`, not its own: with 2 layers, both get layer 0's.
fn decoder_layers(layers: Vec<LayerKv>) -> Vec<LayerKv> {
    let n = layers.len();
    (0..n).map(|i| layers[(2 * i) % n].clone()).collect()
}
