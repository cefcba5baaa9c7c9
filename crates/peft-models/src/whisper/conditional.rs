//! `WhisperForConditionalGeneration`: the model with its tied output projection, loss, loading
//! and greedy decoding.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{AdaptedLinear, AdapterSites, Error, Result, SiteMut};
use peft_io::weights::{LoadOptions, load_from_dir};
use std::path::Path;

use super::WhisperCache;
use super::config::WhisperConfig;
use super::loss::shift_tokens_right;
use crate::layers::seq2seq_lm_loss;
use super::model::WhisperModel;
use crate::generation::{EncoderOutput, Seq2SeqLm};

/// transformers' `WhisperForConditionalGeneration`: speech recognition and translation.
///
/// With `tie_word_embeddings` (Whisper's default) `proj_out` is its own layer holding a copy of
/// the decoder's token table, made at construction and load: adapters can target either.
#[derive(Module, Debug)]
pub struct WhisperForConditionalGeneration {
    /// Encoder and decoder, at paths `model.*`.
    pub model: WhisperModel,
    /// `d_model -> vocab_size`, no bias.
    pub proj_out: AdaptedLinear,
    /// The config the model was built from.
    #[module(skip)]
    pub config: WhisperConfig,
}

impl WhisperForConditionalGeneration {
    /// A new model for a validated `config`, weights drawn from `N(0, init_std)`.
    pub fn new(config: &WhisperConfig, device: &Device) -> Self {
        let model = WhisperForConditionalGeneration {
            model: WhisperModel::new(config, device),
            proj_out: super::linear(config.d_model, config.vocab_size, false, config, device),
            config: config.clone(),
        };
        if config.tie_word_embeddings { model.tie_proj_out() } else { model }
    }

    /// Loads a transformers folder: `config.json` and `model.safetensors` (or its sharded index).
    ///
    /// # Errors
    /// [`Error::Io`] naming `config.json` or `model.safetensors` when missing, the config's
    /// errors ([`WhisperConfig::from_file`]) and the loader's ([`Error::MissingTensor`],
    /// [`Error::ShapeMismatch`]).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = WhisperConfig::from_file(dir.join("config.json"))?;
        Self::from_pretrained_with_config(dir, config, device)
    }

    /// Like [`WhisperForConditionalGeneration::from_pretrained`] with a config given in code (the
    /// folder's `config.json` is not read).
    pub fn from_pretrained_with_config(dir: impl AsRef<Path>, config: WhisperConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let optional = if config.tie_word_embeddings { vec!["proj_out.weight".to_string()] } else { Vec::new() };
        let model = load_from_dir(Self::new(&config, device), dir.as_ref(), &LoadOptions { prefixes: Vec::new(), optional })?;
        Ok(if config.tie_word_embeddings { model.tie_proj_out() } else { model })
    }

    /// Sets `proj_out`'s weight to a copy of the token table, keeping its id and `require_grad`.
    fn tie_proj_out(self) -> Self {
        let WhisperForConditionalGeneration { model, mut proj_out, config } = self;
        let weight = proj_out.base_layer.weight;
        let device = weight.lazy_device();
        // Embedding `[vocab, d_model]` is Burn linear `[d_model, vocab]`; copied, not shared.
        let table = model.decoder.embed_tokens.base_layer.weight.val().detach().transpose().into_data();
        let id = weight.id;
        let dtype = table.dtype();
        proj_out.base_layer.weight = weight.transform_for_load(Tensor::from_data(table, (&device, dtype)), id);
        WhisperForConditionalGeneration { model, proj_out, config }
    }

    /// The config the model was built from.
    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }

    /// An empty decoder cache.
    pub fn new_decoder_cache(&self) -> WhisperCache {
        WhisperCache::new(self.model.decoder.layers.len())
    }

    /// Runs the encoder once ([`super::WhisperEncoder::forward`]).
    ///
    /// # Shapes
    /// - `input_features`: `[batch, num_mel_bins, 2 * max_source_positions]`
    pub fn encode(&self, input_features: Tensor<3>) -> Result<EncoderOutput> {
        self.model.encode(input_features)
    }

    /// Logits for `decoder_input_ids` (which start with `decoder_start_token_id`) given audio
    /// features, as transformers' `model(input_features, decoder_input_ids=...).logits`.
    ///
    /// Fails as [`super::WhisperEncoder::forward`] and [`super::WhisperDecoder::check_length`] do.
    ///
    /// # Shapes
    /// - `input_features`: `[batch, num_mel_bins, 2 * max_source_positions]`
    /// - `decoder_input_ids`: `[batch, len]`
    /// - output: `[batch, len, vocab_size]`
    pub fn forward(&self, input_features: Tensor<3>, decoder_input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        let encoder = self.encode(input_features)?;
        self.decode(decoder_input_ids, None, &encoder, None)
    }

    /// Logits and transformers' loss for `labels`: mean cross-entropy of position `t`'s logits
    /// against `labels[t]` over labels that are not -100. Without `decoder_input_ids` the
    /// decoder reads the labels shifted right after `decoder_start_token_id` (-100 read as
    /// `pad_token_id`), as transformers does.
    ///
    /// Fails as [`WhisperForConditionalGeneration::forward`] does, and with
    /// [`Error::InvalidConfig`] when labels must be shifted and the config has no `pad_token_id`.
    ///
    /// # Shapes
    /// - `decoder_input_ids`, `labels`: `[batch, len]`
    /// - outputs: `[batch, len, vocab_size]` and `[1]`
    pub fn forward_with_loss(
        &self,
        input_features: Tensor<3>,
        decoder_input_ids: Option<Tensor<2, Int>>,
        labels: Tensor<2, Int>,
    ) -> Result<(Tensor<3>, Tensor<1>)> {
        let decoder_input_ids = match decoder_input_ids {
            Some(ids) => ids,
            None => {
                let pad = self.config.pad_token_id.ok_or_else(|| {
                    Error::config("pad_token_id", "null", "a token id, to shift labels into decoder inputs (or pass decoder_input_ids)")
                })?;
                shift_tokens_right(labels.clone(), pad, self.config.decoder_start_token_id)
            }
        };
        let logits = self.forward(input_features, decoder_input_ids)?;
        let loss = seq2seq_lm_loss(logits.clone(), labels);
        Ok((logits, loss))
    }

    /// Decoder logits for `decoder_input_ids` against an encoding, after the tokens in `cache`
    /// (appended to it). See [`super::WhisperDecoder::forward_embeds`].
    ///
    /// # Shapes
    /// - `decoder_input_ids`, `decoder_attention_mask`: `[batch, len]`
    /// - output: `[batch, len, vocab_size]`
    pub fn decode(
        &self,
        decoder_input_ids: Tensor<2, Int>,
        decoder_attention_mask: Option<Tensor<2, Int>>,
        encoder: &EncoderOutput,
        cache: Option<&mut WhisperCache>,
    ) -> Result<Tensor<3>> {
        self.decode_embeds(self.model.decoder.embed(decoder_input_ids), decoder_attention_mask, encoder, cache)
    }

    /// Decoder logits from input embeddings (prompt tuning prepends its virtual tokens' vectors
    /// to [`super::WhisperDecoder::embed`]'s output), optionally after a prefix in `cache`
    /// (prefix tuning: [`WhisperCache::from_prefix`]; generation: the tokens so far).
    ///
    /// # Shapes
    /// - `embeds`: `[batch, len, d_model]`
    /// - `attention_mask`: `[batch, len]`, the new tokens only
    /// - output: `[batch, len, vocab_size]`
    pub fn decode_embeds(&self, embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, encoder: &EncoderOutput, cache: Option<&mut WhisperCache>) -> Result<Tensor<3>> {
        Ok(self.proj_out.forward(self.model.decoder.forward_embeds(embeds, attention_mask, encoder, cache)?))
    }

    /// Greedy decoding from `decoder_start_token_id` with the cache: up to `max_new_tokens`
    /// tokens per row, a row stopping after it emits an eos id. Returns the new tokens (eos
    /// included; transformers' Whisper `generate` leaves the eos out).
    ///
    /// No logits processor runs: this is `generate(do_sample=False)` for a generation config
    /// without forced language/task tokens, `suppress_tokens` or `begin_suppress_tokens`.
    ///
    /// Fails as [`WhisperForConditionalGeneration::encode`] does, and with
    /// [`Error::InvalidState`] when `1 + max_new_tokens` exceeds `max_target_positions`.
    ///
    /// # Shapes
    /// - `input_features`: `[batch, num_mel_bins, 2 * max_source_positions]`
    pub fn generate_greedy(&self, input_features: Tensor<3>, max_new_tokens: usize) -> Result<Vec<Vec<u32>>> {
        let batch = input_features.dims()[0];
        let mut out = vec![Vec::new(); batch];
        if max_new_tokens == 0 {
            return Ok(out);
        }
        // transformers' rule: the start token and the new tokens must fit the position table.
        self.model.decoder.check_length(0, 1 + max_new_tokens)?;
        let encoder = self.encode(input_features)?;
        let device = encoder.hidden.device();
        let eos = self.config.eos_token_ids();
        let mut cache = self.new_decoder_cache();
        let mut next = vec![self.config.decoder_start_token_id; batch];
        let mut done = vec![false; batch];
        for _ in 0..max_new_tokens {
            let ids: Vec<i64> = next.iter().map(|t| i64::from(*t)).collect();
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, 1]), &device);
            let logits = self.decode(ids, None, &encoder, Some(&mut cache))?;
            next = argmax_tokens(logits)?;
            for (row, &token) in next.iter().enumerate() {
                if !done[row] {
                    out[row].push(token);
                    done[row] = eos.contains(&token);
                }
            }
            if done.iter().all(|d| *d) {
                break;
            }
        }
        Ok(out)
    }
}

/// The argmax of each row's logits at its one position, read back to the host.
fn argmax_tokens(logits: Tensor<3>) -> Result<Vec<u32>> {
    let [batch, _, _] = logits.dims();
    let ids = logits.argmax(2).reshape([batch]).into_data().convert::<i64>();
    let ids = ids.try_into_vec::<i64>().map_err(|e| Error::InvalidState(format!("cannot read generated ids back: {e:?}")))?;
    Ok(ids.into_iter().map(|i| u32::try_from(i).unwrap_or(u32::MAX)).collect())
}

impl Seq2SeqLm for WhisperForConditionalGeneration {
    type Cache = WhisperCache;

    fn new_decoder_cache(&self) -> WhisperCache {
        WhisperForConditionalGeneration::new_decoder_cache(self)
    }

    fn decoder_start_token_id(&self) -> u32 {
        self.config.decoder_start_token_id
    }

    /// Positions past `max_target_positions` reuse the last learned position (transformers
    /// raises); [`WhisperForConditionalGeneration::decode`] reports them as an error instead.
    fn decode_cached(&self, decoder_input_ids: Tensor<2, Int>, encoder: &EncoderOutput, cache: &mut WhisperCache) -> Tensor<3> {
        let decoder = &self.model.decoder;
        self.proj_out.forward(decoder.forward_embeds_unchecked(decoder.embed(decoder_input_ids), None, encoder, Some(cache)))
    }
}

impl AdapterSites for WhisperForConditionalGeneration {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.model.visit_sites_prefixed("model.", f);
        f("proj_out", SiteMut::Linear(&mut self.proj_out));
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["proj_out".into()]
    }

    /// `[("proj_out.weight", "model.decoder.embed_tokens.weight")]` with tied embeddings, else
    /// none: the head holds a copy of the table, which parameter counts count once.
    fn tied_weights(&self) -> Vec<(String, String)> {
        if self.config.tie_word_embeddings {
            vec![("proj_out.weight".into(), "model.decoder.embed_tokens.weight".into())]
        } else {
            Vec::new()
        }
    }
}
