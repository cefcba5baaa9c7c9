//! `T5ForConditionalGeneration`: encoder, decoder and language-modelling head; loss and generation.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{AdaptedEmbedding, AdaptedLinear, AdapterSites, Error, Labels, ModelInputs, Result, SiteMut};
use std::path::Path;

use super::config::T5Config;
use super::load::{Checkpoint, LM_HEAD, SHARED, tie};
use super::stack::{T5Cache, T5Stack};
use crate::cache::KvCache;
use crate::generation::{EncoderOutput, Seq2SeqLm};
use crate::layers::{seq2seq_lm_loss, shift_right};

/// transformers' `T5ForConditionalGeneration` / `MT5ForConditionalGeneration`.
///
/// `shared` embeds the tokens of both stacks. A tied `lm_head` (T5 v1.0, or a file without
/// `lm_head.weight`) holds a copy of the table made at construction and load.
#[derive(Module, Debug)]
pub struct T5ForConditionalGeneration {
    /// The token embedding table, `[vocab_size, d_model]`, of encoder and decoder.
    pub shared: AdaptedEmbedding,
    /// The encoder, at paths `encoder.*`.
    pub encoder: T5Stack,
    /// The decoder, at paths `decoder.*`.
    pub decoder: T5Stack,
    /// `d_model -> vocab_size`, no bias.
    pub lm_head: AdaptedLinear,
    /// The config the model was built from.
    #[module(skip)]
    pub config: T5Config,
    /// Whether `lm_head` is a copy of `shared` (counted once).
    #[module(skip)]
    pub lm_head_tied: bool,
}

impl T5ForConditionalGeneration {
    /// A new model for a validated `config`, weights drawn as transformers initialises them,
    /// `lm_head` tied to `shared`.
    pub fn new(config: &T5Config, device: &Device) -> Self {
        let shared = super::embedding(config.vocab_size, config.d_model, config.initializer_factor, device);
        let lm_head = super::linear(config.d_model, config.vocab_size, false, config.initializer_factor, device);
        T5ForConditionalGeneration {
            lm_head: tie(lm_head, &shared),
            shared,
            encoder: T5Stack::new(config, false, device),
            decoder: T5Stack::new(config, true, device),
            config: config.clone(),
            lm_head_tied: true,
        }
    }

    /// Loads a transformers folder: `config.json` and `model.safetensors` (or its sharded index).
    ///
    /// # Errors
    /// [`peft_core::Error::Io`] naming `config.json` or `model.safetensors` when missing, the
    /// config's errors ([`T5Config::from_file`]), and the loader's
    /// ([`peft_core::Error::MissingTensor`], [`peft_core::Error::ShapeMismatch`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        Self::from_pretrained_with_config(dir, T5Config::from_file(dir.join("config.json"))?, device)
    }

    /// Like [`T5ForConditionalGeneration::from_pretrained`] with a config given in code (the
    /// folder's `config.json` is not read): to turn dropout off for a gradient check, say.
    pub fn from_pretrained_with_config(dir: impl AsRef<Path>, mut config: T5Config, device: &Device) -> Result<Self> {
        config.validate()?;
        config.name_or_path.get_or_insert_with(|| dir.as_ref().display().to_string());
        let checkpoint = Checkpoint::read(dir.as_ref())?;
        let tied = checkpoint.lm_head_tied();
        let model = checkpoint.load(Self::new(&config, device), vec![LM_HEAD.into()])?;
        Ok(if tied { T5ForConditionalGeneration { lm_head: tie(model.lm_head, &model.shared), ..model } } else { T5ForConditionalGeneration { lm_head_tied: false, ..model } })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// Looks up token embeddings in `shared` (with any embedding adapter), for prompt methods
    /// that prepend their own vectors before [`T5ForConditionalGeneration::encode_embeds`].
    ///
    /// # Shapes
    /// - `ids`: `[batch, len]`, output `[batch, len, d_model]`
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.shared.forward(ids)
    }

    /// Runs the encoder once; the result serves every decoder step.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, source_len]` (1 = real token, 0 = padding)
    pub fn encode(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>) -> EncoderOutput {
        self.encode_embeds(self.embed(input_ids), attention_mask)
    }

    /// Runs the encoder on input embeddings (prompt tuning's entry point).
    ///
    /// # Shapes
    /// - `embeds`: `[batch, source_len, d_model]`
    /// - `attention_mask`: `[batch, source_len]`
    pub fn encode_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>) -> EncoderOutput {
        EncoderOutput { hidden: self.encoder.encode(embeds, attention_mask.as_ref()), mask: attention_mask }
    }

    /// Logits for decoder input embeddings against `encoder`, after the positions in `cache`
    /// (appended to it): the decoder output, rescaled by `d_model^-0.5` where the config says so,
    /// through `lm_head`.
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, d_model]`
    /// - `decoder_attention_mask`: `[batch, len]`, the new tokens only
    /// - output: `[batch, len, vocab_size]`
    pub fn decode_embeds(&self, embeds: Tensor<3>, decoder_attention_mask: Option<Tensor<2, Int>>, encoder: &EncoderOutput, cache: Option<&mut T5Cache>) -> Tensor<3> {
        let mut hidden = self.decoder.decode(embeds, decoder_attention_mask, encoder, cache);
        if self.config.scales_decoder_output() {
            hidden = hidden.mul_scalar((self.config.d_model as f64).powf(-0.5));
        }
        self.lm_head.forward(hidden)
    }

    /// Logits for `decoder_input_ids` against `encoder` (teacher forcing without a cache).
    ///
    /// # Shapes
    /// - `decoder_input_ids`: `[batch, len]`, output `[batch, len, vocab_size]`
    pub fn decode(&self, decoder_input_ids: Tensor<2, Int>, encoder: &EncoderOutput) -> Tensor<3> {
        self.decode_embeds(self.embed(decoder_input_ids), None, encoder, None)
    }

    /// An empty decoder cache.
    pub fn new_cache(&self) -> T5Cache {
        T5Cache::new(self.decoder.block.len())
    }

    /// Logits of the decoder for `decoder_input_ids`, given the encoder inputs.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, source_len]`
    /// - `decoder_input_ids`: `[batch, target_len]`
    /// - output: `[batch, target_len, vocab_size]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, decoder_input_ids: Tensor<2, Int>) -> Tensor<3> {
        let encoder = self.encode(input_ids, attention_mask);
        self.decode(decoder_input_ids, &encoder)
    }

    /// Logits and loss for `labels`, as transformers computes them from `labels` alone: the decoder
    /// reads `shift_right(labels)` ([`shift_right`]) and the loss is [`seq2seq_lm_loss`].
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, source_len]`
    /// - `labels`: `[batch, target_len]`, -100 where ignored
    /// - outputs: `[batch, target_len, vocab_size]` and `[1]`
    pub fn forward_with_loss(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, labels: Tensor<2, Int>) -> (Tensor<3>, Tensor<1>) {
        let decoder_input_ids = shift_right(labels.clone(), self.config.decoder_start(), self.config.pad_token_id.unwrap_or(0));
        let logits = self.forward(input_ids, attention_mask, decoder_input_ids);
        (logits.clone(), seq2seq_lm_loss(logits, labels))
    }

    /// Greedy decoding with the decoder cache: the encoder runs once, then one token per step,
    /// up to `max_new_tokens` per row, a row stopping after an end-of-sequence token of the
    /// config. Returns the generated tokens per row (without the start token, eos included), as
    /// transformers' `generate(do_sample=False)` less its first column and trailing padding.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, source_len]` (padding on either side)
    pub fn generate_greedy(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, max_new_tokens: usize) -> Vec<Vec<u32>> {
        let [batch, _] = input_ids.dims();
        let device = input_ids.device();
        let encoder = self.encode(input_ids, attention_mask);
        let eos = self.config.eos_token_ids();
        let mut out = vec![Vec::new(); batch];
        let mut done = vec![false; batch];
        let mut cache = self.new_cache();
        let mut next = vec![self.decoder_start_token_id(); batch];
        for _ in 0..max_new_tokens {
            let ids: Vec<i64> = next.iter().map(|t| i64::from(*t)).collect();
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, 1]), &device);
            let logits = self.decode_cached(ids, &encoder, &mut cache);
            let Some(tokens) = argmax_rows(logits) else { break };
            for (row, &token) in tokens.iter().enumerate() {
                if !done[row] {
                    out[row].push(token);
                    done[row] = eos.contains(&token);
                }
            }
            if done.iter().all(|d| *d) {
                break;
            }
            next = tokens;
        }
        out
    }
}

/// The argmax of each row's logits at the last position, read back to the host.
fn argmax_rows(logits: Tensor<3>) -> Option<Vec<u32>> {
    let [batch, len, _] = logits.dims();
    let ids = logits.narrow(1, len.checked_sub(1)?, 1).argmax(2).reshape([batch]);
    let ids = ids.into_data().convert::<i64>().try_into_vec::<i64>().ok()?;
    ids.into_iter().map(|i| u32::try_from(i).ok()).collect()
}

/// The prompt methods' entry points: input embeddings for the encoder (prompt tuning, P-tuning)
/// and a self-attention prefix for the decoder (prefix tuning), as the Python library feeds them.
impl T5ForConditionalGeneration {
    /// The encoder's output on what a prompt method prepared: `inputs_embeds` (virtual tokens in
    /// front, `attention_mask` covering them) or the embedded `input_ids`.
    ///
    /// # Errors
    /// [`peft_core::Error::InvalidState`] when neither is given.
    pub fn encode_inputs(&self, inputs: &ModelInputs) -> Result<EncoderOutput> {
        let embeds = match &inputs.inputs_embeds {
            Some(embeds) => embeds.clone(),
            None => self.embed(inputs.need_ids()?),
        };
        Ok(self.encode_embeds(embeds, inputs.attention_mask.clone()))
    }

    /// A decoder cache holding prefix tuning's keys and values in its self-attention part (the
    /// encoder and cross-attention get none, as in the Python library).
    ///
    /// # Errors
    /// [`peft_core::Error::Unsupported`] when the prefix has not one layer per decoder layer (the
    /// Python library sizes it by the encoder's layers).
    pub fn prefix_cache(&self, prefix: KvCache) -> Result<T5Cache> {
        let (layers, decoder) = (prefix.num_layers(), self.decoder.block.len());
        if layers != decoder {
            return Err(Error::Unsupported {
                what: format!("prefix tuning with {layers} prefix layers on a T5 decoder of {decoder} layers"),
                supported: "T5 models whose decoder has as many layers as the encoder (num_decoder_layers = num_layers)".into(),
            });
        }
        Ok(T5Cache::from_prefix(prefix))
    }

    /// Logits from what a prompt method prepared: the encoder on [`Self::encode_inputs`], the
    /// decoder on `decoder_input_ids`, else on the token labels shifted right, after the prefix
    /// in `past_key_values` if any. The decoder's positions hold no virtual token, so the logits
    /// are `[batch, target_len, vocab_size]` for every method.
    ///
    /// # Errors
    /// A missing input; neither decoder ids nor token labels; see [`Self::prefix_cache`].
    pub fn forward_inputs(&self, inputs: &ModelInputs) -> Result<Tensor<3>> {
        let encoder = self.encode_inputs(inputs)?;
        let decoder_ids = match (&inputs.decoder_input_ids, &inputs.labels) {
            (Some(ids), _) => ids.clone(),
            (None, Some(Labels::Tokens(labels))) => shift_right(labels.clone(), self.config.decoder_start(), self.config.pad_token_id.unwrap_or(0)),
            _ => return Err(Error::InvalidState("T5 needs `decoder_input_ids` or token `labels` in its inputs".into())),
        };
        let mut cache = inputs.past_key_values.clone().map(|p| self.prefix_cache(p)).transpose()?;
        Ok(self.decode_embeds(self.embed(decoder_ids), None, &encoder, cache.as_mut()))
    }
}

impl Seq2SeqLm for T5ForConditionalGeneration {
    type Cache = T5Cache;

    fn new_decoder_cache(&self) -> T5Cache {
        self.new_cache()
    }

    fn decoder_start_token_id(&self) -> u32 {
        self.config.decoder_start()
    }

    fn decode_cached(&self, decoder_input_ids: Tensor<2, Int>, encoder: &EncoderOutput, cache: &mut T5Cache) -> Tensor<3> {
        self.decode_embeds(self.embed(decoder_input_ids), None, encoder, Some(cache))
    }
}

impl AdapterSites for T5ForConditionalGeneration {
    fn model_dims(&self) -> Option<peft_core::ModelDims> {
        peft_core::TaskModel::dims(self).ok()
    }

    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f("shared", SiteMut::Embedding(&mut self.shared));
        self.encoder.visit_sites_prefixed("encoder.", f);
        self.decoder.visit_sites_prefixed("decoder.", f);
        f("lm_head", SiteMut::Linear(&mut self.lm_head));
    }

    fn default_target_modules(&self) -> Vec<String> {
        super::default_targets()
    }

    fn model_type(&self) -> Option<String> {
        Some(self.config.model_type.clone())
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["lm_head".into()]
    }

    fn name_or_path(&self) -> Option<String> {
        self.config.name_or_path.clone()
    }

    /// `[("lm_head.weight", "shared.weight")]` when the head is a copy of the table, else none.
    fn tied_weights(&self) -> Vec<(String, String)> {
        if self.lm_head_tied { vec![(LM_HEAD.into(), SHARED.into())] } else { Vec::new() }
    }
}
