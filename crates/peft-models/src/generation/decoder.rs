//! One interface over causal and encoder-decoder models for the search loops: run the prompt,
//! then one token per row per step, reordering rows for beam search.

use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{Error, Result};

use super::{CausalLm, EncoderOutput, GenerationConfig, SelectRows, Seq2SeqLm};

/// A model with its cache, ready to decode.
pub(crate) trait Decoder {
    /// Logits of the prompt, `[rows, len, vocab]`; called once, first.
    fn prefill(&mut self) -> Tensor<3>;
    /// Logits of one new token per row, `ids` `[rows, 1]`, after everything before.
    fn step(&mut self, ids: Tensor<2, Int>) -> Tensor<3>;
    /// Where the model runs.
    fn device(&self) -> Device;
}

/// A decoder whose per-row state can be reordered and repeated (beam search).
pub(crate) trait Reorder: Decoder {
    /// Keeps rows `rows` of the state (indices into the current rows, repeats allowed).
    fn select_rows(&mut self, rows: Tensor<1, Int>);
}

/// A causal LM continuing a (left-padded) prompt.
pub(crate) struct CausalDecoder<'a, M: CausalLm> {
    pub model: &'a M,
    pub cache: Option<M::Cache>,
    pub prompt: Option<(Tensor<2, Int>, Option<Tensor<2, Int>>)>,
    pub device: Device,
}

impl<M: CausalLm> Decoder for CausalDecoder<'_, M> {
    fn prefill(&mut self) -> Tensor<3> {
        let (ids, mask) = self.prompt.take().unwrap_or_else(|| (Tensor::zeros([0, 0], &self.device), None));
        let cache = self.cache.get_or_insert_with(|| self.model.new_cache());
        self.model.forward_cached(ids, mask, cache)
    }

    fn step(&mut self, ids: Tensor<2, Int>) -> Tensor<3> {
        let cache = self.cache.get_or_insert_with(|| self.model.new_cache());
        self.model.forward_cached(ids, None, cache)
    }

    fn device(&self) -> Device {
        self.device.clone()
    }
}

impl<M: CausalLm> Reorder for CausalDecoder<'_, M>
where
    M::Cache: SelectRows,
{
    fn select_rows(&mut self, rows: Tensor<1, Int>) {
        self.cache = self.cache.take().map(|c| c.select_rows(rows));
    }
}

/// An encoder-decoder decoding against a fixed encoding, from the start token.
pub(crate) struct Seq2SeqDecoder<'a, M: Seq2SeqLm> {
    pub model: &'a M,
    pub cache: Option<M::Cache>,
    pub encoder: EncoderOutput,
    pub start: u32,
    pub rows: usize,
}

impl<M: Seq2SeqLm> Decoder for Seq2SeqDecoder<'_, M> {
    fn prefill(&mut self) -> Tensor<3> {
        let ids = token_column(&vec![self.start; self.rows], &self.device());
        self.step(ids)
    }

    fn step(&mut self, ids: Tensor<2, Int>) -> Tensor<3> {
        let cache = self.cache.get_or_insert_with(|| self.model.new_decoder_cache());
        self.model.decode_cached(ids, &self.encoder, cache)
    }

    fn device(&self) -> Device {
        self.encoder.hidden.device()
    }
}

impl<M: Seq2SeqLm> Reorder for Seq2SeqDecoder<'_, M> {
    fn select_rows(&mut self, rows: Tensor<1, Int>) {
        let n = rows.dims()[0];
        // Beams reorder only within their own source row, whose encoding they all share: the
        // encoding needs selecting only when the number of rows changes (expansion to beams).
        if n != self.rows {
            self.encoder = self.encoder.clone().select_rows(rows.clone());
            self.rows = n;
        }
        self.cache = self.cache.take().map(|c| c.select_rows(rows));
    }
}

/// `[rows, 1]` token ids on `device`.
pub(crate) fn token_column(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = ids.iter().map(|t| i64::from(*t)).collect();
    let n = ids.len();
    Tensor::from_data(TensorData::new(ids, [n, 1]), device)
}

/// Row indices as a tensor.
pub(crate) fn row_indices(rows: &[usize], device: &Device) -> Tensor<1, Int> {
    let rows: Vec<i64> = rows.iter().map(|r| *r as i64).collect();
    let n = rows.len();
    Tensor::from_data(TensorData::new(rows, [n]), device)
}

/// Reads an int tensor back to the host.
fn host_ints(t: Tensor<2, Int>, what: &str) -> Result<Vec<i64>> {
    t.into_data().convert::<i64>().try_into_vec::<i64>().map_err(|e| Error::InvalidState(format!("cannot read {what} back: {e:?}")))
}

/// A checked causal prompt: what the model runs on, and each row's real tokens (for the
/// repetition penalty).
pub(crate) struct Prompt {
    pub ids: Tensor<2, Int>,
    pub mask: Option<Tensor<2, Int>>,
    pub tokens: Vec<Vec<u32>>,
}

/// Checks a causal prompt: the mask matches the ids, padding is on the left, every row has a
/// token; an empty prompt becomes one `bos_token_id` per row.
pub(crate) fn causal_prompt(input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, config: &GenerationConfig) -> Result<Prompt> {
    let [batch, len] = input_ids.dims();
    let device = input_ids.device();
    if len == 0 {
        let bos = config.bos_token_id.ok_or_else(|| {
            Error::config("bos_token_id", "null", "a token id to start from, since the prompt is empty")
        })?;
        return Ok(Prompt { ids: token_column(&vec![bos; batch], &device), mask: None, tokens: vec![vec![bos]; batch] });
    }
    let ids = host_ints(input_ids.clone(), "input_ids")?;
    let mask_values = match &attention_mask {
        None => vec![1; batch * len],
        Some(mask) if mask.dims() != [batch, len] => {
            return Err(Error::ShapeMismatch {
                path: "generate".into(),
                tensor: "attention_mask".into(),
                expected: vec![batch, len],
                actual: mask.dims().to_vec(),
            });
        }
        Some(mask) => host_ints(mask.clone(), "attention_mask")?,
    };
    let mut tokens = Vec::with_capacity(batch);
    for (row, (ids, mask)) in ids.chunks(len).zip(mask_values.chunks(len)).enumerate() {
        let first = mask.iter().position(|m| *m != 0).ok_or_else(|| {
            Error::InvalidState(format!("attention_mask row {row} has no real token; give every row at least one"))
        })?;
        if mask[first..].contains(&0) {
            return Err(Error::Unsupported {
                what: format!("right padding (attention_mask row {row} has padding after a real token) in generate"),
                supported: "left padding: pad prompts on the left (tokenizer padding_side = \"left\")".into(),
            });
        }
        tokens.push(ids[first..].iter().map(|t| *t as u32).collect());
    }
    Ok(Prompt { ids: input_ids, mask: attention_mask, tokens })
}
