//! The contracts between the models and the shared generation code.

use burn::tensor::{Int, Tensor};

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
