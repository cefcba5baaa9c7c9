//! Beam search as transformers runs it (`GenerationMixin._beam_search`, transformers 5):
//! log-probabilities summed along each beam, the best `K = max(2, 1 + #eos) * num_beams`
//! continuations per source row, finished hypotheses scored `sum / new_len^length_penalty`,
//! and `early_stopping` deciding when the search is over.
//!
//! Scores are f32 and the "impossible" marks are `-1e9` added in transformers' order, so ties
//! and near-ties resolve as they do there.

use peft_core::Result;

use super::decoder::{Reorder, row_indices, token_column};
use super::logits::{last_logits, log_softmax, penalize_repetition, sample_distinct, warp};
use super::rng::Rng;
use super::{EarlyStopping, GenerationConfig};

/// transformers' stand-in for an impossible score.
const IMPOSSIBLE: f32 = -1.0e9;

/// A beam or a finished hypothesis: its new tokens and score.
#[derive(Clone, Debug)]
struct Hyp {
    tokens: Vec<u32>,
    score: f32,
    /// For finished slots: whether it holds a real hypothesis (not a placeholder).
    done: bool,
}

/// The search state of one source row.
struct Row {
    running: Vec<Hyp>,
    finished: Vec<Hyp>,
    /// transformers' `is_early_stop_heuristic_unsatisfied`: a running beam may still win.
    improvable: bool,
}

/// One candidate continuation: which running beam, its new tokens (the beam's and one more),
/// the summed log-probability.
struct Candidate {
    beam: usize,
    tokens: Vec<u32>,
    log_prob: f32,
}

/// Beam search over `seen.len()` source rows (their prompt tokens in `seen`) for up to
/// `max_new` tokens; returns each row's best finished hypothesis.
pub(crate) fn beam_search<D: Reorder>(decoder: &mut D, seen: Vec<Vec<u32>>, max_new: usize, config: &GenerationConfig) -> Result<Vec<Vec<u32>>> {
    let (batch, beams) = (seen.len(), config.num_beams);
    if max_new == 0 || batch == 0 {
        return Ok(vec![Vec::new(); batch]);
    }
    let device = decoder.device();
    let eos = &config.eos_token_id;
    let keep = 2.max(1 + eos.len()) * beams;
    // Beam sampling keeps at least one candidate beyond the eos ids (transformers' min_tokens_to_keep).
    let min_keep = if eos.is_empty() { 2 } else { eos.len() + 1 };
    let mut rng = Rng::new(config.seed);
    let mut rows: Vec<Row> = (0..batch)
        .map(|_| Row {
            running: (0..beams).map(|j| Hyp { tokens: Vec::new(), score: if j == 0 { 0.0 } else { IMPOSSIBLE }, done: false }).collect(),
            finished: vec![Hyp { tokens: Vec::new(), score: IMPOSSIBLE, done: false }; beams],
            improvable: true,
        })
        .collect();
    // The prompt runs once per source row, then every row's state is repeated `beams` times.
    let expand = row_indices(&(0..batch * beams).map(|r| r / beams).collect::<Vec<_>>(), &device);
    let mut logits = decoder.prefill().select(0, expand.clone());
    decoder.select_rows(expand);
    for generated in 0..max_new {
        let (mut scores, vocab) = last_logits(logits)?;
        let mut all_hit = true;
        let mut sources = Vec::with_capacity(batch * beams);
        for (b, row) in rows.iter_mut().enumerate() {
            let mut flat = Vec::with_capacity(beams * vocab);
            for (j, beam) in row.running.iter().enumerate() {
                let s = &mut scores[(b * beams + j) * vocab..(b * beams + j + 1) * vocab];
                log_softmax(s);
                let history: Vec<u32> = seen[b].iter().chain(&beam.tokens).copied().collect();
                penalize_repetition(s, &history, config.repetition_penalty);
                if config.do_sample {
                    warp(s, config, min_keep);
                }
                flat.extend(s.iter().map(|x| x + beam.score));
            }
            let picked = if config.do_sample { sampled(&flat, keep, &mut rng) } else { top(&flat, keep) };
            let candidates: Vec<Candidate> = picked
                .into_iter()
                .map(|i| {
                    let (beam, token) = (i / vocab, (i % vocab) as u32);
                    let tokens = row.running[beam].tokens.iter().copied().chain([token]).collect();
                    Candidate { beam, tokens, log_prob: flat[i] }
                })
                .collect();
            let stops = |c: &Candidate| c.tokens.last().is_some_and(|t| eos.contains(t)) || generated + 1 >= max_new;
            let hits: Vec<bool> = candidates.iter().map(stops).collect();
            all_hit &= hits.iter().all(|h| *h);
            let chosen = advance(row, &candidates, &hits, beams);
            update_finished(row, &candidates, &hits, beams, generated + 1, config);
            sources.extend(chosen.iter().map(|j| b * beams + j));
        }
        let generated = generated + 1;
        let mut any_improvable = false;
        for row in &mut rows {
            row.improvable = row.improvable && still_improvable(row, generated, max_new, config);
            any_improvable |= row.improvable;
        }
        let all_full = rows.iter().all(|r| r.finished.iter().all(|h| h.done));
        if !any_improvable || (all_full && config.early_stopping == EarlyStopping::Finished) || all_hit {
            break;
        }
        decoder.select_rows(row_indices(&sources, &device));
        let last: Vec<u32> = rows.iter().flat_map(|r| r.running.iter().map(|h| h.tokens.last().copied().unwrap_or(0))).collect();
        logits = decoder.step(token_column(&last, &device));
    }
    Ok(rows.into_iter().map(best).collect())
}

/// The `k` best indices, highest first; ties keep the lower index.
fn top(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]));
    order.truncate(k);
    order
}

/// `k` indices drawn without replacement from `softmax(values)`, then sorted best first.
fn sampled(values: &[f32], k: usize, rng: &mut Rng) -> Vec<usize> {
    let mut picked = sample_distinct(values, k, rng);
    picked.sort_by(|a, b| values[*b].total_cmp(&values[*a]));
    picked
}

/// Replaces the running beams by the best candidates that did not just stop; returns which old
/// beam each new one continues.
fn advance(row: &mut Row, candidates: &[Candidate], hits: &[bool], beams: usize) -> Vec<usize> {
    let scores: Vec<f32> = candidates.iter().zip(hits).map(|(c, h)| if *h { c.log_prob + IMPOSSIBLE } else { c.log_prob }).collect();
    let next: Vec<usize> = top(&scores, beams);
    row.running = next.iter().map(|&i| Hyp { tokens: candidates[i].tokens.clone(), score: scores[i], done: false }).collect();
    next.iter().map(|&i| candidates[i].beam).collect()
}

/// Adds the candidates among the first `beams` that stopped to the finished hypotheses, scored
/// `log_prob / new_len^length_penalty`, keeping the best `beams`.
fn update_finished(row: &mut Row, candidates: &[Candidate], hits: &[bool], beams: usize, new_len: usize, config: &GenerationConfig) {
    let denominator = (new_len as f64).powf(config.length_penalty) as f32;
    let full = row.finished.iter().all(|h| h.done) && config.early_stopping == EarlyStopping::Finished;
    let mut merged = std::mem::take(&mut row.finished);
    for (i, (c, hit)) in candidates.iter().zip(hits).enumerate() {
        let just_done = *hit && i < beams;
        let mut score = c.log_prob / denominator;
        if full {
            score += IMPOSSIBLE;
        }
        if !row.improvable {
            score += IMPOSSIBLE;
        }
        if !just_done {
            score += IMPOSSIBLE;
        }
        merged.push(Hyp { tokens: c.tokens.clone(), score, done: just_done });
    }
    let scores: Vec<f32> = merged.iter().map(|h| h.score).collect();
    row.finished = top(&scores, beams).into_iter().map(|i| merged[i].clone()).collect();
}

/// Whether the best running beam could still beat the worst finished hypothesis (transformers'
/// early-stop heuristic), `generated` tokens in.
fn still_improvable(row: &Row, generated: usize, max_new: usize, config: &GenerationConfig) -> bool {
    let length = if config.early_stopping == EarlyStopping::Never && config.length_penalty > 0.0 { max_new } else { generated };
    let best_possible = row.running[0].score / (length as f64).powf(config.length_penalty) as f32;
    let worst = row.finished.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
    row.finished.iter().any(|h| best_possible > if h.done { worst } else { IMPOSSIBLE })
}

/// The best finished hypothesis (the running best if, impossibly, none finished).
fn best(row: Row) -> Vec<u32> {
    match row.finished.into_iter().next() {
        Some(h) if h.done => h.tokens,
        _ => row.running.into_iter().next().map(|h| h.tokens).unwrap_or_default(),
    }
}
