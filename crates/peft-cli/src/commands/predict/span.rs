//! Extractive question answering: the span of the context that answers each question.

use anyhow::{Result, anyhow};
use peft::burn::tensor::{Int, Tensor, TensorData};
use peft::models::tokenizer::Tokenizer;
use tokenizers::{Encoding, TruncationDirection};

use super::{Job, Sink};
use crate::span_metrics::SpanScores;

/// One question and its context as the model sees them.
struct PairTokens {
    ids: Vec<u32>,
    /// 0 for the question's tokens, 1 for the context's (BERT's segments).
    type_ids: Vec<u32>,
    /// Per position: the context's byte range the token covers, for context tokens only.
    context_bytes: Vec<Option<(usize, usize)>>,
}

/// The answer to one question.
#[derive(Debug, PartialEq)]
struct Answer {
    text: String,
    /// `p_start(start) · p_end(end)`, each a softmax over the context's tokens.
    score: f32,
    /// Character offsets in the context, end exclusive (as transformers' pipeline reports them).
    start: usize,
    end: usize,
}

/// Answers each row's question (`--question-column`) from its context (`--context-column`):
/// `answer`, `score`, `start` and `end` per row; exact match and F1 when every row of `--data`
/// has an `--answer-column`.
pub(super) fn answer(job: &Job<'_>, sink: &mut Sink) -> Result<Option<SpanScores>> {
    let Job { args, model, tokenizer, rows, device, .. } = *job;
    let questions = job.texts(&args.question_column, "--question-column")?;
    let contexts = job.texts(&args.context_column, "--context-column")?;
    let (pad, max_length) = (job.pad_id(), job.max_tokens());
    // Only BERT-family encoders have a token type table; the others refuse token types.
    let with_types = matches!(model.base().family(), "bert" | "roberta");
    let truths: Option<Vec<&str>> = (args.data.is_some() && rows.iter().all(|r| r.contains_key(&args.answer_column)))
        .then(|| rows.iter().map(|r| r[&args.answer_column].as_str()).collect());
    let mut scores = SpanScores::default();
    let bar = job.progress()?;
    let batch_size = args.batch_size.max(1);
    for (chunk_index, chunk) in questions.chunks(batch_size).enumerate() {
        let first = chunk_index * batch_size;
        let pairs = chunk
            .iter()
            .zip(&contexts[first..])
            .map(|(q, c)| encode_pair(tokenizer, q, c, max_length))
            .collect::<Result<Vec<_>>>()?;
        let width = pairs.iter().map(|p| p.ids.len()).max().unwrap_or(0);
        let column = |f: &dyn Fn(&PairTokens, usize) -> i64| -> Tensor<2, Int> {
            let values: Vec<i64> = pairs.iter().flat_map(|p| (0..width).map(move |i| f(p, i))).collect();
            Tensor::from_data(TensorData::new(values, [pairs.len(), width]), device)
        };
        let ids = column(&|p, i| p.ids.get(i).map_or(i64::from(pad), |&t| i64::from(t)));
        let mask = column(&|p, i| i64::from(i < p.ids.len()));
        let mut inputs = peft::ModelInputs::ids_with_mask(ids, mask);
        if with_types {
            inputs = inputs.with_token_type_ids(column(&|p, i| p.type_ids.get(i).map_or(0, |&t| i64::from(t))));
        }
        let logits = job.token_outputs(model.forward(inputs)?.rank3()?, width);
        let values: Vec<f32> = logits.into_data().convert::<f32>().try_to_vec().map_err(|e| anyhow!("cannot read the output: {e:?}"))?;
        for (row, pair) in pairs.iter().enumerate() {
            let index = first + row;
            let context = contexts[index];
            // `[batch, width, 2]`: the start logit, then the end logit, per position.
            let at = |i: usize, k: usize| values[(row * width + i) * 2 + k];
            let found = best_span(pair, context, args.max_answer_tokens.max(1), at);
            if let Some(truths) = &truths {
                scores.add(found.as_ref().map_or("", |a| a.text.as_str()), truths[index]);
            }
            let prediction = match found {
                Some(a) => serde_json::json!({ "answer": a.text, "score": super::round(a.score), "start": a.start, "end": a.end }),
                // The context was cut away entirely by --max-length.
                None => serde_json::json!({ "answer": null, "score": 0.0, "start": null, "end": null }),
            };
            sink.write(&[("question", questions[index]), ("context", context)], prediction)?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(truths.map(|_| scores))
}

/// The question, then the context cut to fit `max_length` with the tokenizer's special tokens
/// (the question is kept whole, as transformers' `truncation="only_second"`).
fn encode_pair(tokenizer: &Tokenizer, question: &str, context: &str, max_length: usize) -> Result<PairTokens> {
    let inner = tokenizer.inner();
    let encode = |text: &str| -> Result<Encoding> { inner.encode(text, false).map_err(|e| anyhow!("cannot tokenize `{text}`: {e}")) };
    let mut question_tokens = encode(question)?;
    let mut context_tokens = encode(context)?;
    let special = inner.get_post_processor().map_or(0, |p| tokenizers::PostProcessor::added_tokens(p, true));
    // A question too long for the model keeps its start, leaving room for some context.
    let context_floor = 16.min(max_length / 2);
    question_tokens.truncate(max_length.saturating_sub(special + context_floor).max(1), 0, TruncationDirection::Right);
    let room = max_length.saturating_sub(question_tokens.len() + special);
    context_tokens.truncate(room, 0, TruncationDirection::Right);
    let pair = inner.post_process(question_tokens, Some(context_tokens), true).map_err(|e| anyhow!("cannot join question and context: {e}"))?;
    let context_bytes = pair.get_sequence_ids().iter().zip(pair.get_offsets()).map(|(seq, &(s, e))| (*seq == Some(1)).then_some((s, e))).collect();
    Ok(PairTokens { ids: pair.get_ids().to_vec(), type_ids: pair.get_type_ids().to_vec(), context_bytes })
}

/// The context span `start <= end < start + max_tokens` with the largest `start + end` logit
/// (the largest probability product), or `None` when no context token is left.
fn best_span(pair: &PairTokens, context: &str, max_tokens: usize, logit: impl Fn(usize, usize) -> f32) -> Option<Answer> {
    let positions: Vec<usize> = (0..pair.ids.len()).filter(|&i| pair.context_bytes[i].is_some()).collect();
    let probabilities = |k: usize| -> Vec<f32> {
        let top = positions.iter().map(|&i| logit(i, k)).fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = positions.iter().map(|&i| (logit(i, k) - top).exp()).collect();
        let sum: f32 = exp.iter().sum();
        exp.into_iter().map(|e| e / sum).collect()
    };
    let (starts, ends) = (probabilities(0), probabilities(1));
    let mut best: Option<(f32, usize, usize)> = None;
    for (a, &start) in positions.iter().enumerate() {
        for (b, &end) in positions.iter().enumerate().skip(a) {
            if end >= start + max_tokens {
                break;
            }
            let score = starts[a] * ends[b];
            if best.is_none_or(|(s, _, _)| score > s) {
                best = Some((score, start, end));
            }
        }
    }
    let (score, start, end) = best?;
    let (from, _) = pair.context_bytes[start]?;
    let (_, to) = pair.context_bytes[end]?;
    let text = context.get(from..to)?.to_string();
    Some(Answer { text, score, start: context[..from].chars().count(), end: context[..to].chars().count() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> PairTokens {
        // `[CLS] q [SEP] the cat sat [SEP]` over the context "the cat sat".
        PairTokens {
            ids: vec![1, 2, 3, 4, 5, 6, 3],
            type_ids: vec![0, 0, 0, 1, 1, 1, 1],
            context_bytes: vec![None, None, None, Some((0, 3)), Some((4, 7)), Some((8, 11)), None],
        }
    }

    #[test]
    fn the_best_span_stays_in_the_context_with_its_end_after_its_start() {
        // The question token has the largest start logit; the end's largest is before the start.
        let start = [0.0, 9.0, 0.0, 1.0, 4.0, 0.0, 9.0];
        let end = [0.0, 9.0, 0.0, 3.0, 1.0, 3.0, 9.0];
        let answer = best_span(&pair(), "the cat sat", 30, |i, k| if k == 0 { start[i] } else { end[i] }).expect("a span");
        assert_eq!((answer.text.as_str(), answer.start, answer.end), ("cat sat", 4, 11));
        assert!(answer.score > 0.0 && answer.score < 1.0);
        let short = best_span(&pair(), "the cat sat", 1, |i, k| if k == 0 { start[i] } else { end[i] }).expect("a span");
        assert_eq!(short.text, "cat", "one token at most");
    }

    #[test]
    fn offsets_count_characters_not_bytes() {
        let pair = PairTokens { ids: vec![1, 2], type_ids: vec![1, 1], context_bytes: vec![Some((0, 7)), Some((8, 11))] };
        let answer = best_span(&pair, "héllo! cat", 30, |i, _| i as f32).expect("a span");
        assert_eq!((answer.text.as_str(), answer.start, answer.end), ("cat", 7, 10));
    }

    #[test]
    fn no_context_token_left_means_no_answer() {
        let pair = PairTokens { ids: vec![1, 2], type_ids: vec![0, 0], context_bytes: vec![None, None] };
        assert_eq!(best_span(&pair, "", 30, |_, _| 0.0), None);
    }
}
