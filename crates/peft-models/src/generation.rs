//! Greedy decoding over any model that runs with a key/value cache.

use burn::tensor::{Int, Tensor, TensorData};

/// A causal language model that can continue from a cache of what it has seen.
pub trait CausalLm {
    /// The model's key/value cache.
    type Cache;

    /// An empty cache.
    fn new_cache(&self) -> Self::Cache;

    /// Logits for `input_ids` after the cached tokens; appends them to the cache.
    ///
    /// # Shapes
    /// - `input_ids`, `attention_mask`: `[batch, len]`
    /// - output: `[batch, len, vocab_size]`
    fn forward_cached(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, cache: &mut Self::Cache) -> Tensor<3>;
}

/// An encoder-decoder model (T5, Whisper) that decodes step by step against a fixed encoding.
///
/// The encoder runs once, through the model's own entry point (token ids for T5, audio features
/// for Whisper), and gives an [`EncoderOutput`]; generation then calls
/// [`Seq2SeqLm::decode_cached`] once per step.
pub trait Seq2SeqLm {
    /// The decoder's self-attention (and cross-attention) cache.
    type Cache: SelectRows;

    /// An empty decoder cache.
    fn new_decoder_cache(&self) -> Self::Cache;

    /// The token every decoder sequence starts with (`decoder_start_token_id`).
    fn decoder_start_token_id(&self) -> u32;

    /// Logits for `decoder_input_ids` after the cached decoder tokens, attending to `encoder`;
    /// appends the new tokens to the cache.
    ///
    /// # Shapes
    /// - `decoder_input_ids`: `[batch, len]`
    /// - output: `[batch, len, vocab_size]`
    fn decode_cached(&self, decoder_input_ids: Tensor<2, Int>, encoder: &EncoderOutput, cache: &mut Self::Cache) -> Tensor<3>;
}

/// What an encoder hands to its decoder.
///
/// # Shapes
/// - `hidden`: `[batch, source_len, d_model]`
/// - `mask`: `[batch, source_len]`, 1 for real positions (`None`: all real)
#[derive(Clone, Debug)]
pub struct EncoderOutput {
    /// The encoder's last hidden states.
    pub hidden: Tensor<3>,
    /// Which source positions are real.
    pub mask: Option<Tensor<2, Int>>,
}

/// State kept per batch row (caches, encodings): beam search reorders and repeats rows.
pub trait SelectRows: Sized {
    /// Keeps rows `rows` (`[new_batch]`, indices into the current batch, repeats allowed).
    fn select_rows(self, rows: Tensor<1, Int>) -> Self;
}

impl SelectRows for EncoderOutput {
    fn select_rows(self, rows: Tensor<1, Int>) -> Self {
        EncoderOutput {
            hidden: self.hidden.select(0, rows.clone()),
            mask: self.mask.map(|m| m.select(0, rows)),
        }
    }
}

/// Greedy decoding: the prompt runs once, then one token per step through the cache. Each row
/// yields up to `max_new_tokens` new tokens and stops after `eos_token_id`; finished rows keep
/// being fed their last token (ignored) until every row is done.
///
/// Returns the new tokens per row, without the prompt. An empty prompt yields nothing.
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
    let [batch, len] = input_ids.dims();
    let mut out = vec![Vec::new(); batch];
    if max_new_tokens == 0 || len == 0 {
        return out;
    }
    let device = input_ids.device();
    let mut cache = model.new_cache();
    let mut logits = model.forward_cached(input_ids, attention_mask, &mut cache);
    let mut done = vec![false; batch];
    for step in 0..max_new_tokens {
        let Some(next) = last_argmax(logits) else { break };
        for (row, &token) in next.iter().enumerate() {
            if !done[row] {
                out[row].push(token);
                done[row] = Some(token) == eos_token_id;
            }
        }
        if step + 1 == max_new_tokens || done.iter().all(|d| *d) {
            break;
        }
        let ids: Vec<i64> = next.iter().map(|t| i64::from(*t)).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, 1]), &device);
        logits = model.forward_cached(ids, None, &mut cache);
    }
    out
}

/// The argmax of each row's last logits, read back to the host.
fn last_argmax(logits: Tensor<3>) -> Option<Vec<u32>> {
    let [batch, len, _] = logits.dims();
    let ids = logits.narrow(1, len.checked_sub(1)?, 1).argmax(2).reshape([batch]);
    let ids = ids.into_data().convert::<i64>().try_into_vec::<i64>().ok()?;
    ids.into_iter().map(|i| u32::try_from(i).ok()).collect()
}
