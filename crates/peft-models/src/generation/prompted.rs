//! Generation after prompt methods' inputs: the prefill starts from input embeddings (virtual
//! tokens in front of the prompt's) and/or an already-seen prefix cache (prefix tuning).

use burn::tensor::{Device, Int, Tensor};
use peft_core::{ModelInputs, Result};

use super::decoder::{Decoder, Reorder, causal_prompt};
use super::{CausalLm, GenerationConfig, Generated, run};
use crate::cache::KvCache;
use crate::causal::{DecoderLm, DecoderStack};

/// A decoder-only LM whose prefill takes embeddings and a prefix cache.
struct PromptedDecoder<'a, M: DecoderLm> {
    model: &'a M,
    cache: Option<KvCache>,
    embeds: Option<Tensor<3>>,
    ids: Option<Tensor<2, Int>>,
    mask: Option<Tensor<2, Int>>,
    device: Device,
}

impl<M: DecoderLm> Decoder for PromptedDecoder<'_, M> {
    fn prefill(&mut self) -> Tensor<3> {
        let mut cache = self.cache.take().unwrap_or_else(|| self.model.new_cache());
        let embeds = match (self.embeds.take(), self.ids.take()) {
            (Some(e), _) => e,
            (None, Some(ids)) => self.model.stack().embed(ids),
            (None, None) => Tensor::zeros([0, 0, 0], &self.device),
        };
        let hidden = self.model.stack().forward_embeds_cached(embeds, self.mask.take(), &mut cache);
        let logits = self.model.lm_head().forward(hidden);
        self.cache = Some(cache);
        logits
    }

    fn step(&mut self, ids: Tensor<2, Int>) -> Tensor<3> {
        let cache = self.cache.get_or_insert_with(|| self.model.new_cache());
        self.model.forward_cached(ids, None, cache)
    }

    fn device(&self) -> Device {
        self.device.clone()
    }
}

impl<M: DecoderLm> Reorder for PromptedDecoder<'_, M> {
    fn select_rows(&mut self, rows: Tensor<1, Int>) {
        self.cache = self.cache.take().map(|c| c.select_rows(rows));
    }
}

/// [`super::generate`] for the inputs a prompt method prepared: `input_ids` are the prompt's real
/// tokens (left-padded, as in [`super::generate`]); `inputs_embeds`, when given, are what the
/// model runs on (virtual tokens in front of the ids' embeddings) with `attention_mask` covering
/// them; `past_key_values`, when given, is an already-seen prefix (prefix tuning).
///
/// The first greedy token is the argmax of the training forward's last logits on the same inputs.
///
/// # Shapes
/// - `input_ids`: `[batch, len]`
/// - `inputs_embeds`: `[batch, virtual + len, hidden]`
/// - `attention_mask`: `[batch, virtual + len]` with embeddings, else `[batch, len]`
///
/// # Errors
/// As [`super::generate`]; a missing `input_ids`.
pub fn generate_prompted<M: DecoderLm>(model: &M, inputs: ModelInputs, config: &GenerationConfig) -> Result<Generated> {
    config.validate()?;
    let ids = inputs.need_ids()?;
    let [batch, len] = ids.dims();
    let device = ids.device();
    // The mask may cover virtual tokens in front; its last `len` columns are the ids'.
    let own_mask = inputs.attention_mask.clone().map(|m| {
        let width = m.dims()[1];
        if width > len { m.slice([0..batch, width - len..width]) } else { m }
    });
    let prompt = causal_prompt(ids, own_mask, config)?;
    let max_new = config.new_tokens_after(len)?;
    let mut decoder = PromptedDecoder {
        model,
        cache: inputs.past_key_values,
        embeds: inputs.inputs_embeds,
        ids: Some(prompt.ids),
        mask: inputs.attention_mask,
        device,
    };
    run(&mut decoder, prompt.tokens, max_new, config)
}
