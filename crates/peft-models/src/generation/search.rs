//! Greedy decoding and sampling: one token per row per step until every row has emitted an eos
//! id or `max_new` tokens.

use peft_core::Result;

use super::GenerationConfig;
use super::decoder::{Decoder, token_column};
use super::logits::{argmax, last_logits, penalize_repetition, sample, warp};
use super::rng::Rng;

/// Decodes up to `max_new` tokens per row (argmax, or a draw when `config.do_sample`).
///
/// `seen` holds each row's prompt tokens, for the repetition penalty. Finished rows stop
/// collecting tokens (and drawing random numbers) but keep being fed the model's pick, so
/// their ids are always in the vocabulary; their logits are ignored.
pub(crate) fn greedy_or_sample<D: Decoder>(
    decoder: &mut D,
    mut seen: Vec<Vec<u32>>,
    max_new: usize,
    config: &GenerationConfig,
) -> Result<Vec<Vec<u32>>> {
    let batch = seen.len();
    let mut out = vec![Vec::new(); batch];
    if max_new == 0 || batch == 0 {
        return Ok(out);
    }
    let mut rng = Rng::new(config.seed);
    let mut done = vec![false; batch];
    let mut logits = decoder.prefill();
    for step in 0..max_new {
        let (mut scores, vocab) = last_logits(logits)?;
        let mut next = Vec::with_capacity(batch);
        for (row, scores) in scores.chunks_mut(vocab).enumerate() {
            if done[row] {
                next.push(argmax(scores));
                continue;
            }
            penalize_repetition(scores, &seen[row], config.repetition_penalty);
            let token = if config.do_sample {
                warp(scores, config, 1);
                sample(scores, &mut rng)
            } else {
                argmax(scores)
            };
            next.push(token);
            out[row].push(token);
            seen[row].push(token);
            done[row] = config.eos_token_id.contains(&token);
        }
        if step + 1 == max_new || done.iter().all(|d| *d) {
            break;
        }
        logits = decoder.step(token_column(&next, &decoder.device()));
    }
    Ok(out)
}
