//! Text generation for every model that implements [`CausalLm`] (decoders) or [`Seq2SeqLm`]
//! (encoder-decoders): greedy decoding, sampling (temperature, top-k, top-p, seeded) and beam
//! search, configured by a [`GenerationConfig`] read from transformers' `generation_config.json`,
//! and token-for-token equal to transformers' `generate` for greedy and beam search.
//!
//! The prompt runs once; then each step feeds one token per row (per beam) through the model's
//! key/value cache. Batched prompts are padded on the left (`attention_mask` 0 on the pads);
//! rows stop at any of the eos ids or after `max_new_tokens`, and [`Generated`] returns each
//! row's new tokens (eos included), or a padded tensor of them.
//!
//! ```no_run
//! use burn::tensor::{Device, Int, Tensor, TensorData};
//! use peft_models::generation::{GenerationConfig, generate};
//! use peft_models::llama::LlamaForCausalLM;
//!
//! # fn main() -> peft_core::Result<()> {
//! let device = Device::default();
//! let model = LlamaForCausalLM::from_pretrained("models/SmolLM2-135M", &device)?;
//! let mut config = GenerationConfig::from_pretrained("models/SmolLM2-135M")?;
//! config.max_new_tokens = Some(20);
//! config.num_beams = 4;
//! let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 504, 3458], [1, 3]), &device);
//! let out = generate(&model, ids, None, &config)?;
//! println!("{:?}", out.tokens[0]);
//! # Ok(())
//! # }
//! ```

mod beam;
mod contracts;
mod decoder;
mod logits;
mod prompted;
mod rng;
mod search;
mod seq2seq_cache;

pub use peft_core::generation::{EarlyStopping, GenerationConfig, Generated};
pub use contracts::{CausalLm, EncoderOutput, SelectRows, Seq2SeqLm};
pub use prompted::generate_prompted;
pub use seq2seq_cache::EncoderDecoderCache;

use burn::tensor::{Int, Tensor};
use peft_core::Result;

use decoder::{CausalDecoder, Reorder, Seq2SeqDecoder, causal_prompt};

/// Continues each prompt of a causal LM as `config` says: greedy (`do_sample` false,
/// `num_beams` 1), sampling (`do_sample`), beam search (`num_beams` > 1; with `do_sample`,
/// beam sampling).
///
/// `attention_mask` is 1 for real tokens and 0 for left padding (`None`: no padding); a padded
/// row generates what it would alone. An empty prompt (`len` 0) starts from `bos_token_id`.
///
/// # Shapes
/// - `input_ids`, `attention_mask`: `[batch, len]`
///
/// # Errors
/// [`GenerationConfig::validate`]'s; [`peft_core::Error::Unsupported`] for right padding;
/// [`peft_core::Error::ShapeMismatch`] when the mask's shape is not the ids'; an
/// [`peft_core::Error::InvalidConfig`] naming `max_length` when the prompt already fills it, or
/// `bos_token_id` for an empty prompt without one; [`peft_core::Error::InvalidState`] for a row
/// with no real token.
pub fn generate<M>(model: &M, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, config: &GenerationConfig) -> Result<Generated>
where
    M: CausalLm,
    M::Cache: SelectRows,
{
    config.validate()?;
    let device = input_ids.device();
    let prompt = causal_prompt(input_ids, attention_mask, config)?;
    let max_new = config.new_tokens_after(prompt.ids.dims()[1])?;
    let mut decoder = CausalDecoder { model, cache: None, prompt: Some((prompt.ids, prompt.mask)), device };
    run(&mut decoder, prompt.tokens, max_new, config)
}

/// Decodes from an encoder's output as `config` says (see [`generate`] for the strategies),
/// starting every row from `config.decoder_start_token_id`, else the model's own.
///
/// `max_length` counts the start token, as in transformers; the start token is not returned.
///
/// # Errors
/// [`GenerationConfig::validate`]'s, and an [`peft_core::Error::InvalidConfig`] naming
/// `max_length` when it leaves no room after the start token.
pub fn generate_seq2seq<M: Seq2SeqLm>(model: &M, encoder: &EncoderOutput, config: &GenerationConfig) -> Result<Generated> {
    config.validate()?;
    let start = config.decoder_start_token_id.unwrap_or_else(|| model.decoder_start_token_id());
    let rows = encoder.hidden.dims()[0];
    let max_new = config.new_tokens_after(1)?;
    let mut decoder = Seq2SeqDecoder { model, cache: None, encoder: encoder.clone(), start, rows };
    run(&mut decoder, vec![vec![start]; rows], max_new, config)
}

/// [`generate_seq2seq`] with the decoder's cache already holding `cache` (prefix tuning's keys
/// and values in its self-attention part): the decoder tokens sit after them, as in training.
///
/// # Errors
/// As [`generate_seq2seq`].
pub fn generate_seq2seq_after<M: Seq2SeqLm>(model: &M, encoder: &EncoderOutput, cache: M::Cache, config: &GenerationConfig) -> Result<Generated> {
    config.validate()?;
    let start = config.decoder_start_token_id.unwrap_or_else(|| model.decoder_start_token_id());
    let rows = encoder.hidden.dims()[0];
    let max_new = config.new_tokens_after(1)?;
    let mut decoder = Seq2SeqDecoder { model, cache: Some(cache), encoder: encoder.clone(), start, rows };
    run(&mut decoder, vec![vec![start]; rows], max_new, config)
}

/// Picks the search for `config` and wraps its tokens.
fn run<D: Reorder>(decoder: &mut D, seen: Vec<Vec<u32>>, max_new: usize, config: &GenerationConfig) -> Result<Generated> {
    let tokens = if config.num_beams > 1 {
        beam::beam_search(decoder, seen, max_new, config)?
    } else {
        search::greedy_or_sample(decoder, seen, max_new, config)?
    };
    Ok(Generated { tokens, pad_token_id: config.fill_token_id() })
}

/// Greedy decoding of a causal LM whose cache need not support beam search: up to
/// `max_new_tokens` new tokens per row, a row stopping after `eos_token_id`.
///
/// Returns the new tokens per row, without the prompt. Kept for callers without a
/// [`GenerationConfig`]; [`generate`] is the full entry point and reports errors, where this
/// logs them and returns no tokens (a right-padded mask, a logits read-back failure).
///
/// # Shapes
/// - `input_ids`, `attention_mask`: `[batch, len]` (left padding: mask 0 on the pads)
pub fn greedy<M: CausalLm>(
    model: &M,
    input_ids: Tensor<2, Int>,
    attention_mask: Option<Tensor<2, Int>>,
    max_new_tokens: usize,
    eos_token_id: Option<u32>,
) -> Vec<Vec<u32>> {
    let batch = input_ids.dims()[0];
    let config = GenerationConfig { eos_token_id: eos_token_id.into_iter().collect(), ..GenerationConfig::greedy(max_new_tokens) };
    if max_new_tokens == 0 || input_ids.dims()[1] == 0 {
        return vec![Vec::new(); batch];
    }
    let device = input_ids.device();
    let result = causal_prompt(input_ids, attention_mask, &config).and_then(|prompt| {
        let mut decoder = CausalDecoder { model, cache: None, prompt: Some((prompt.ids, prompt.mask)), device };
        search::greedy_or_sample(&mut decoder, prompt.tokens, max_new_tokens, &config)
    });
    result.unwrap_or_else(|e| {
        log::error!("greedy decoding failed: {e}");
        vec![Vec::new(); batch]
    })
}

#[cfg(test)]
mod tests;
