//! `BertModel`: embeddings, encoder and pooler; the base of every BERT and RoBERTa head.

use burn::module::Module;
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedLinear, AdapterSites, SiteMut};
use std::path::Path;

use super::config::BertConfig;
use crate::cache::KvCache;
use crate::layers::full_key_mask;
use super::embeddings::BertEmbeddings;
use super::encoder::BertEncoder;
use peft_core::Result;

/// Added to the attention scores of padding keys. Far below any real score, so `exp` underflows
/// to exactly 0 in f32, yet finite in f16 so a row of padding only gives uniform weights, not NaN.
const MASKED: f32 = -1.0e4;

/// The pooler (`pooler`): `tanh(dense(h[:, 0]))`, the sentence vector BERT's classifier reads.
#[derive(Module, Debug)]
pub struct BertPooler {
    /// `hidden_size -> hidden_size`.
    pub dense: AdaptedLinear,
}

impl BertPooler {
    /// A new pooler for `config`.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        BertPooler { dense: super::linear(config.hidden_size, config.hidden_size, config, device) }
    }

    /// Pools the first token.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, hidden]`
    /// - output: `[batch, hidden]`
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        tanh(self.dense.forward(first_token(hidden)))
    }
}

/// `h[:, 0, :]`.
pub(crate) fn first_token(hidden: Tensor<3>) -> Tensor<2> {
    let [batch, _, width] = hidden.dims();
    hidden.narrow(1, 0, 1).reshape([batch, width])
}

/// A BERT or RoBERTa encoder for feature extraction (transformers' `BertModel` / `RobertaModel`).
///
/// Module paths are transformers' (`encoder.layer.0.attention.self.query`), so adapter files and
/// `target_modules` written for the Python library address the same layers.
#[derive(Module, Debug)]
pub struct BertModel {
    /// Word, position and token type embeddings.
    pub embeddings: BertEmbeddings,
    /// The encoder layers.
    pub encoder: BertEncoder,
    /// The pooler; `None` where the checkpoint has none (RoBERTa's classifiers).
    pub pooler: Option<BertPooler>,
}

/// RoBERTa's encoder is BERT's with other position ids, chosen by the config's `model_type`.
pub type RobertaModel = BertModel;

impl BertModel {
    /// A new model with a pooler, weights drawn as transformers initialises them.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self::without_pooler(config, device).with_pooler(config, device)
    }

    /// A new model with no pooler (`add_pooling_layer=False`, as in RoBERTa's classifiers).
    pub fn without_pooler(config: &BertConfig, device: &Device) -> Self {
        BertModel { embeddings: BertEmbeddings::new(config, device), encoder: BertEncoder::new(config, device), pooler: None }
    }

    fn with_pooler(mut self, config: &BertConfig, device: &Device) -> Self {
        self.pooler = Some(BertPooler::new(config, device));
        self
    }

    /// Loads `config.json` and `model.safetensors` (or shards) from a transformers model folder.
    ///
    /// The folder may hold a bare `BertModel` / `RobertaModel` or a task model whose keys start
    /// with `bert.` / `roberta.` (its head is ignored). The pooler is kept only if the file has it.
    /// Fails with a typed error for an unsupported config, a missing tensor or a shape mismatch.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = BertConfig::from_file(dir)?;
        super::load::load_base(dir, &config, device)
    }

    /// The last hidden state.
    ///
    /// `attention_mask` is 1 for real tokens and 0 for padding; padding keys never receive
    /// attention. `token_type_ids` default to zeros.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`, `token_type_ids`: `[batch, seq]`
    /// - output: `[batch, seq, hidden_size]`
    ///
    /// # Panics
    /// When an id is outside its embedding table (`seq` longer than the position table included),
    /// as the backend's lookup does.
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<3> {
        let embedded = self.embeddings.forward(input_ids, token_type_ids);
        self.encoder.forward(embedded, attention_mask.map(additive_mask))
    }

    /// Like [`BertModel::forward`] from word embeddings (those of [`BertModel::embed_tokens`],
    /// with learned prompt rows prepended, say); positions and token types are added here.
    ///
    /// # Shapes
    /// - `inputs_embeds`: `[batch, seq, hidden_size]`
    /// - `attention_mask`, `token_type_ids`: `[batch, seq]`
    /// - output: `[batch, seq, hidden_size]`
    pub fn forward_embeds(&self, inputs_embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<3> {
        let embedded = self.embeddings.forward_embeds(inputs_embeds, token_type_ids);
        self.encoder.forward(embedded, attention_mask.map(additive_mask))
    }

    /// The last hidden state after prefix tuning's keys and values (`prefix`, as already-seen
    /// tokens in every layer): the tokens' positions start after the prefix, and every token
    /// attends to the prefix (its mask, else all of it) and to the real tokens.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, seq]`
    /// - `prefix`: per layer `[batch, heads, virtual, head_dim]`
    /// - output: `[batch, seq, hidden_size]`
    pub fn forward_with_prefix(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        token_type_ids: Option<Tensor<2, Int>>,
        prefix: &KvCache,
    ) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let embedded = self.embeddings.forward_after(input_ids, token_type_ids, prefix.seen());
        let mask = full_key_mask(Some(prefix), attention_mask, batch, seq, &device);
        self.encoder.forward_with_prefix(embedded, mask.map(additive_mask), prefix)
    }

    /// The word embeddings of `input_ids` (with their adapters), before positions are added.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, seq]`
    /// - output: `[batch, seq, hidden_size]`
    pub fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        self.embeddings.word_embeddings.forward(input_ids)
    }

    /// The vocabulary, width and position table this encoder takes. RoBERTa numbers positions
    /// from `pad_token_id + 1`, so `pad_token_id + 1` rows of its table are never a position.
    pub fn input_limits(&self) -> peft_core::InputLimits {
        let [vocab_size, hidden_size] = self.embeddings.word_embeddings.dims();
        let rows = self.embeddings.position_embeddings.dims()[0];
        let max_positions = match self.embeddings.model_type {
            super::config::ModelType::Bert => rows,
            super::config::ModelType::Roberta => rows.saturating_sub(self.embeddings.pad_token_id + 1),
        };
        peft_core::InputLimits {
            vocab_size: Some(vocab_size),
            type_vocab_size: Some(self.embeddings.token_type_embeddings.dims()[0]),
            hidden_size: Some(hidden_size),
            max_positions: Some(max_positions),
            ..Default::default()
        }
    }

    /// The sizes prompt methods take from the model (`hidden_size`, `num_hidden_layers`,
    /// `num_attention_heads`, as the Python library reads them).
    pub fn prompt_dims(&self) -> Option<peft_core::ModelDims> {
        let [vocab_size, hidden_size] = self.embeddings.word_embeddings.base_layer.weight.dims();
        let heads = self.encoder.layer.first()?.attention.self_attention.num_heads;
        Some(peft_core::ModelDims {
            hidden_size,
            num_layers: self.encoder.layer.len(),
            num_attention_heads: heads,
            num_key_value_heads: heads,
            head_dim: hidden_size / heads,
            vocab_size,
            num_transformer_submodules: 1,
        })
    }

    /// The pooler output of a last hidden state, if this model has a pooler.
    ///
    /// # Shapes
    /// - `last_hidden_state`: `[batch, seq, hidden_size]`
    /// - output: `[batch, hidden_size]`
    pub fn pooled_output(&self, last_hidden_state: Tensor<3>) -> Option<Tensor<2>> {
        self.pooler.as_ref().map(|p| p.forward(last_hidden_state))
    }

    /// Calls `f` for every site with `prefix` before its path (`""` or `"bert."`).
    pub(crate) fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        let e = &mut self.embeddings;
        f(&format!("{prefix}embeddings.word_embeddings"), SiteMut::Embedding(&mut e.word_embeddings));
        f(&format!("{prefix}embeddings.position_embeddings"), SiteMut::Embedding(&mut e.position_embeddings));
        f(&format!("{prefix}embeddings.token_type_embeddings"), SiteMut::Embedding(&mut e.token_type_embeddings));
        for (i, layer) in self.encoder.layer.iter_mut().enumerate() {
            let at = format!("{prefix}encoder.layer.{i}");
            let attn = &mut layer.attention.self_attention;
            f(&format!("{at}.attention.self.query"), SiteMut::Linear(&mut attn.query));
            f(&format!("{at}.attention.self.key"), SiteMut::Linear(&mut attn.key));
            f(&format!("{at}.attention.self.value"), SiteMut::Linear(&mut attn.value));
            f(&format!("{at}.attention.output.dense"), SiteMut::Linear(&mut layer.attention.output.dense));
            f(&format!("{at}.intermediate.dense"), SiteMut::Linear(&mut layer.intermediate.dense));
            f(&format!("{at}.output.dense"), SiteMut::Linear(&mut layer.output.dense));
        }
        if let Some(pooler) = &mut self.pooler {
            f(&format!("{prefix}pooler.dense"), SiteMut::Linear(&mut pooler.dense));
        }
    }
}

/// `(1 - mask) * MASKED`, shaped to broadcast over heads and queries.
///
/// # Shapes
/// - `mask`: `[batch, seq]`
/// - output: `[batch, 1, 1, seq]`
fn additive_mask(mask: Tensor<2, Int>) -> Tensor<4> {
    let [batch, seq] = mask.dims();
    mask.float().neg().add_scalar(1.0).mul_scalar(MASKED).reshape([batch, 1, 1, seq])
}

impl AdapterSites for BertModel {
    fn model_dims(&self) -> Option<peft_core::ModelDims> {
        self.prompt_dims()
    }

    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.visit_sites_prefixed("", f);
    }

    fn default_target_modules(&self) -> Vec<String> {
        vec!["query".into(), "value".into()]
    }

    fn model_type(&self) -> Option<String> {
        Some("bert".into())
    }
}
