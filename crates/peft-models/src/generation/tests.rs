//! The search loops on fake models whose logits are a function of each row's whole history,
//! kept in a cache that beam search must reorder correctly: greedy against a hand-rolled loop,
//! beam search against exhaustive search, sampling's properties, seq2seq, configs and errors.

#[cfg(test)] // (tidy: everything below is test code)
use super::*;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::Error;

type Scores = Box<dyn Fn(u32, &[u32]) -> Vec<f32>>;

/// Logits `f(source, history)`: the source row (seq2seq) or 0, and every token seen so far.
struct Fake {
    scores: Scores,
}

/// Each row's tokens so far.
#[derive(Clone, Debug, Default)]
struct History(Vec<Vec<u32>>);

impl SelectRows for History {
    fn select_rows(self, rows: Tensor<1, Int>) -> Self {
        History(ints(rows).iter().map(|r| self.0[*r as usize].clone()).collect())
    }
}

fn ints<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().try_into_vec::<i64>().expect("ints")
}

fn device() -> Device {
    peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in")
}

fn ids(rows: &[Vec<i64>]) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(rows.concat(), [rows.len(), rows[0].len()]), &device())
}

impl Fake {
    /// Appends `ids` (skipping padding) to each row's history and scores every position.
    fn run(&self, sources: &[u32], ids: Tensor<2, Int>, mask: Option<Tensor<2, Int>>, cache: &mut History) -> Tensor<3> {
        let [batch, len] = ids.dims();
        let tokens = ints(ids);
        let mask = mask.map_or(vec![1; batch * len], ints);
        cache.0.resize(batch, Vec::new());
        let mut out = Vec::new();
        let mut vocab = 0;
        for r in 0..batch {
            for p in 0..len {
                if mask[r * len + p] != 0 {
                    cache.0[r].push(tokens[r * len + p] as u32);
                }
                let s = (self.scores)(sources[r], &cache.0[r]);
                vocab = s.len();
                out.extend(s);
            }
        }
        Tensor::from_data(TensorData::new(out, [batch, len, vocab]), &device())
    }
}

impl CausalLm for Fake {
    type Cache = History;
    fn new_cache(&self) -> History {
        History::default()
    }
    fn forward_cached(&self, ids: Tensor<2, Int>, mask: Option<Tensor<2, Int>>, cache: &mut History) -> Tensor<3> {
        let rows = ids.dims()[0];
        self.run(&vec![0; rows], ids, mask, cache)
    }
}

impl Seq2SeqLm for Fake {
    type Cache = History;
    fn new_decoder_cache(&self) -> History {
        History::default()
    }
    fn decoder_start_token_id(&self) -> u32 {
        0
    }
    fn decode_cached(&self, ids: Tensor<2, Int>, encoder: &EncoderOutput, cache: &mut History) -> Tensor<3> {
        // The encoding's first value names its source row, so a beam reading another row's
        // encoding scores differently.
        let hidden = encoder.hidden.clone().into_data().convert::<f32>().try_into_vec::<f32>().expect("floats");
        let per_row = hidden.len() / encoder.hidden.dims()[0];
        let sources: Vec<u32> = hidden.chunks(per_row).map(|r| r[0] as u32).collect();
        self.run(&sources, ids, None, cache)
    }
}

/// Pseudo-random logits in `[-6, 6)` over `vocab` tokens, a function of the source and history.
fn hashed(vocab: usize, seed: u64) -> Scores {
    Box::new(move |source, history| {
        let mut h = seed ^ (u64::from(source) << 40);
        for t in history {
            h = (h ^ u64::from(*t)).wrapping_mul(0x100_0000_01b3).rotate_left(17);
        }
        (0..vocab as u64)
            .map(|v| {
                let mut z = h.wrapping_add(v.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z ^= z >> 29;
                ((z >> 11) as f64 / (1u64 << 53) as f64 * 12.0 - 6.0) as f32
            })
            .collect()
    })
}

fn fixed(logits: Vec<f32>) -> Scores {
    Box::new(move |_, _| logits.clone())
}

fn log_probs(scores: &[f32]) -> Vec<f32> {
    let mut s = scores.to_vec();
    logits::log_softmax(&mut s);
    s
}

/// The best continuation of every kind: all sequences up to `max_new` tokens (ending at the
/// first eos), scored `sum log p / len^length_penalty`.
fn exhaustive(fake: &Fake, source: u32, prompt: &[u32], vocab: usize, max_new: usize, eos: &[u32], lp: f64) -> Vec<u32> {
    let mut best = (f64::NEG_INFINITY, Vec::new());
    let mut stack = vec![(Vec::<u32>::new(), 0f64)];
    while let Some((seq, sum)) = stack.pop() {
        let history: Vec<u32> = prompt.iter().chain(&seq).copied().collect();
        let lp_next = log_probs(&(fake.scores)(source, &history));
        for t in 0..vocab as u32 {
            let mut next = seq.clone();
            next.push(t);
            let s = sum + f64::from(lp_next[t as usize]);
            if eos.contains(&t) || next.len() == max_new {
                let score = s / (next.len() as f64).powf(lp);
                if score > best.0 {
                    best = (score, next);
                }
            } else {
                stack.push((next, s));
            }
        }
    }
    best.1
}

/// Textbook beam search recomputing every prefix from scratch (no cache to reorder): keep the
/// `beams` best prefixes by summed log-probability for `steps` steps, return the best.
fn classic_beam(fake: &Fake, source: u32, prompt: &[u32], beams: usize, steps: usize) -> Vec<u32> {
    let mut prefixes: Vec<(f32, Vec<u32>)> = vec![(0.0, Vec::new())];
    for _ in 0..steps {
        let mut next = Vec::new();
        for (sum, seq) in &prefixes {
            let history: Vec<u32> = prompt.iter().chain(seq).copied().collect();
            for (t, lp) in log_probs(&(fake.scores)(source, &history)).into_iter().enumerate() {
                next.push((sum + lp, seq.iter().copied().chain([t as u32]).collect::<Vec<_>>()));
            }
        }
        next.sort_by(|a, b| b.0.total_cmp(&a.0));
        next.truncate(beams);
        prefixes = next;
    }
    prefixes.swap_remove(0).1
}

fn run_causal(fake: &Fake, prompt: &[Vec<i64>], mask: Option<&[Vec<i64>]>, config: &GenerationConfig) -> Generated {
    generate(fake, ids(prompt), mask.map(ids), config).expect("generates")
}

#[test]
fn greedy_follows_the_argmax_and_stops_at_any_eos() {
    let fake = Fake { scores: hashed(7, 1) };
    let prompt = vec![vec![3i64, 1, 4]];
    let mut history: Vec<u32> = vec![3, 1, 4];
    let mut expected = Vec::new();
    for _ in 0..8 {
        let t = logits::argmax(&(fake.scores)(0, &history));
        expected.push(t);
        history.push(t);
    }
    let config = GenerationConfig::greedy(8);
    assert_eq!(run_causal(&fake, &prompt, None, &config).tokens[0], expected);
    // Stopping: the 3rd and 5th tokens as eos ids; the first of them to appear ends the row.
    let eos = vec![expected[4], expected[2]];
    let stop = expected.iter().position(|t| eos.contains(t)).expect("an eos appears");
    let config = GenerationConfig { eos_token_id: eos, pad_token_id: Some(6), ..GenerationConfig::greedy(8) };
    let out = run_causal(&fake, &prompt, None, &config);
    assert_eq!(out.tokens[0], expected[..=stop].to_vec());
    assert_eq!(greedy(&fake, ids(&prompt), None, 8, Some(expected[2]))[0], expected[..=stop.min(2)].to_vec());
}

#[test]
fn left_padded_rows_generate_what_they_would_alone_and_are_padded() {
    let fake = Fake { scores: hashed(9, 2) };
    let config = GenerationConfig { eos_token_id: vec![4], pad_token_id: Some(8), ..GenerationConfig::greedy(6) };
    for beams in [1, 3] {
        let config = GenerationConfig { num_beams: beams, ..config.clone() };
        let long = run_causal(&fake, &[vec![1, 2, 3, 5]], None, &config).tokens.remove(0);
        let short = run_causal(&fake, &[vec![7, 6]], None, &config).tokens.remove(0);
        let both = run_causal(&fake, &[vec![1, 2, 3, 5], vec![0, 0, 7, 6]], Some(&[vec![1; 4], vec![0, 0, 1, 1]]), &config);
        assert_eq!(both.tokens, vec![long.clone(), short.clone()], "beams {beams}");
        let (padded, [rows, width]) = both.padded();
        assert_eq!((rows, width), (2, long.len().max(short.len())));
        for (r, row) in [long, short].iter().enumerate() {
            assert!(padded[r * width + row.len()..(r + 1) * width].iter().all(|t| *t == 8));
        }
    }
}

#[test]
fn beam_search_with_enough_beams_is_exhaustive_search() {
    // 3 tokens, 4 steps: 27 beams keep every prefix, and `never` with a positive or zero length
    // penalty only stops when nothing can improve, so the result is the global best.
    let vocab = 3;
    for (seed, eos, lp) in [(3u64, vec![], 1.0), (4, vec![2], 1.0), (5, vec![0, 2], 0.0), (6, vec![1], 2.0), (7, vec![2], 1.0)] {
        let fake = Fake { scores: hashed(vocab, seed) };
        let config = GenerationConfig {
            num_beams: 27,
            length_penalty: lp,
            early_stopping: EarlyStopping::Never,
            eos_token_id: eos.clone(),
            ..GenerationConfig::greedy(4)
        };
        let out = run_causal(&fake, &[vec![1, 2], vec![0, 2]], Some(&[vec![1, 1], vec![0, 1]]), &config);
        assert_eq!(out.tokens[0], exhaustive(&fake, 0, &[1, 2], vocab, 4, &eos, lp), "seed {seed}");
        assert_eq!(out.tokens[1], exhaustive(&fake, 0, &[2], vocab, 4, &eos, lp), "seed {seed}");
    }
}

#[test]
fn beam_search_reorders_the_cache_like_textbook_beam_search() {
    // Without eos and with length_penalty 0 transformers' beam search is the textbook one; two
    // beams over six steps cross lineages, so a cache row left in the wrong order shows.
    for seed in 20..26 {
        let fake = Fake { scores: hashed(5, seed) };
        let config = GenerationConfig {
            num_beams: 2,
            length_penalty: 0.0,
            early_stopping: EarlyStopping::Never,
            ..GenerationConfig::greedy(6)
        };
        let out = run_causal(&fake, &[vec![1, 2], vec![0, 3]], Some(&[vec![1, 1], vec![0, 1]]), &config);
        assert_eq!(out.tokens[0], classic_beam(&fake, 0, &[1, 2], 2, 6), "seed {seed}");
        assert_eq!(out.tokens[1], classic_beam(&fake, 0, &[3], 2, 6), "seed {seed}");
        let out = generate_seq2seq(&fake, &encoding(2), &config).expect("beam");
        for source in 0..2u32 {
            assert_eq!(out.tokens[source as usize], classic_beam(&fake, source, &[0], 2, 6), "seed {seed} source {source}");
        }
    }
}

#[test]
fn one_beam_of_beam_search_scores_like_greedy_and_beams_beat_greedy() {
    let fake = Fake { scores: hashed(6, 8) };
    let prompt = vec![vec![2i64, 3]];
    let greedy_tokens = run_causal(&fake, &prompt, None, &GenerationConfig::greedy(5)).tokens.remove(0);
    let score = |seq: &[u32]| {
        let mut history = vec![2u32, 3];
        let mut sum = 0.0;
        for t in seq {
            sum += log_probs(&(fake.scores)(0, &history))[*t as usize];
            history.push(*t);
        }
        sum
    };
    let config = GenerationConfig { num_beams: 4, early_stopping: EarlyStopping::Never, ..GenerationConfig::greedy(5) };
    let beam = run_causal(&fake, &prompt, None, &config).tokens.remove(0);
    assert_eq!(beam.len(), 5);
    assert!(score(&beam) >= score(&greedy_tokens) - 1e-6);
}

#[test]
fn sampling_is_seeded_and_its_knobs_reduce_to_greedy() {
    let fake = Fake { scores: hashed(12, 9) };
    let prompt = vec![vec![1i64, 2, 3], vec![4, 5, 6]];
    let sample = |f: &dyn Fn(&mut GenerationConfig)| {
        let mut c = GenerationConfig { do_sample: true, seed: Some(11), ..GenerationConfig::greedy(10) };
        f(&mut c);
        run_causal(&fake, &prompt, None, &c).tokens
    };
    let greedy_tokens = run_causal(&fake, &prompt, None, &GenerationConfig::greedy(10)).tokens;
    assert_eq!(sample(&|_| {}), sample(&|_| {}), "same seed, same tokens");
    assert_ne!(sample(&|_| {}), sample(&|c| c.seed = Some(12)), "another seed");
    assert_ne!(sample(&|_| {}), greedy_tokens, "sampling is not greedy here");
    assert_eq!(sample(&|c| c.top_k = 1), greedy_tokens, "top_k 1");
    assert_eq!(sample(&|c| c.top_p = 1e-6), greedy_tokens, "tiny top_p");
    assert_eq!(sample(&|c| c.temperature = 1e-3), greedy_tokens, "near-zero temperature");
}

#[test]
fn sampling_frequencies_follow_the_tempered_distribution() {
    // p = softmax([ln 3, 0] / T): 3/4 at T = 1, 9/10 at T = 0.5, 1/2 as T grows.
    let fake = Fake { scores: fixed(vec![3f32.ln(), 0.0]) };
    let share = |temperature: f64, seed: u64| {
        let c = GenerationConfig { do_sample: true, temperature, seed: Some(seed), ..GenerationConfig::greedy(4000) };
        let tokens = run_causal(&fake, &[vec![0]], None, &c).tokens.remove(0);
        tokens.iter().filter(|t| **t == 0).count() as f64 / tokens.len() as f64
    };
    for (t, p) in [(1.0, 0.75), (0.5, 0.9), (100.0, 0.5)] {
        let got = share(t, 5);
        assert!((got - p).abs() < 0.03, "temperature {t}: {got} vs {p}");
    }
    // A flat distribution: different seeds give different draws.
    let flat = Fake { scores: fixed(vec![0.0; 50]) };
    let draw = |seed| {
        let c = GenerationConfig { do_sample: true, top_k: 0, seed: Some(seed), ..GenerationConfig::greedy(20) };
        run_causal(&flat, &[vec![0]], None, &c).tokens
    };
    assert_ne!(draw(1), draw(2));
    assert_eq!(draw(1), draw(1));
}

#[test]
fn beam_sampling_is_seeded() {
    let fake = Fake { scores: hashed(10, 10) };
    let c = GenerationConfig { do_sample: true, num_beams: 3, seed: Some(4), eos_token_id: vec![9], ..GenerationConfig::greedy(6) };
    let a = run_causal(&fake, &[vec![1, 2]], None, &c);
    assert_eq!(a, run_causal(&fake, &[vec![1, 2]], None, &c));
    assert!(!a.tokens[0].is_empty());
}

#[test]
fn repetition_penalty_discourages_seen_tokens() {
    // Token 0 is always the favourite; with a strong penalty it appears once, then others win.
    let fake = Fake { scores: fixed(vec![2.0, 1.5, 1.0, 0.5]) };
    let c = GenerationConfig { repetition_penalty: 10.0, ..GenerationConfig::greedy(4) };
    assert_eq!(run_causal(&fake, &[vec![3]], None, &c).tokens[0], vec![0, 1, 2, 0]);
}

fn encoding(rows: usize) -> EncoderOutput {
    // Row r's encoding is all r: the fake reads its source from it.
    let values: Vec<f32> = (0..rows).flat_map(|r| vec![r as f32; 2 * 4]).collect();
    EncoderOutput { hidden: Tensor::from_data(TensorData::new(values, [rows, 2, 4]), &device()), mask: None }
}

#[test]
fn seq2seq_greedy_and_beam_search() {
    let fake = Fake { scores: hashed(3, 12) };
    let encoder = encoding(2);
    let config = GenerationConfig { eos_token_id: vec![2], ..GenerationConfig::greedy(3) };
    let greedy_out = generate_seq2seq(&fake, &encoder, &config).expect("greedy");
    for source in 0..2u32 {
        let mut history = vec![0u32];
        let mut expected = Vec::new();
        while expected.len() < 3 {
            let t = logits::argmax(&(fake.scores)(source, &history));
            expected.push(t);
            history.push(t);
            if t == 2 {
                break;
            }
        }
        assert_eq!(greedy_out.tokens[source as usize], expected);
    }
    let config = GenerationConfig { num_beams: 27, early_stopping: EarlyStopping::Never, ..GenerationConfig::greedy(4) };
    let beam = generate_seq2seq(&fake, &encoder, &config).expect("beam");
    for source in 0..2u32 {
        assert_eq!(beam.tokens[source as usize], exhaustive(&fake, source, &[0], 3, 4, &[], 1.0), "source {source}");
    }
    // max_length counts the start token; decoder_start_token_id overrides the model's.
    let config = GenerationConfig { max_new_tokens: None, max_length: 3, decoder_start_token_id: Some(1), ..config };
    assert!(generate_seq2seq(&fake, &encoder, &config).expect("runs").tokens.iter().all(|t| t.len() <= 2));
}

#[test]
fn bad_prompts_and_configs_are_typed_errors() {
    let fake = Fake { scores: hashed(5, 13) };
    let right = generate(&fake, ids(&[vec![1, 2, 0]]), Some(ids(&[vec![1, 1, 0]])), &GenerationConfig::greedy(2));
    assert!(matches!(right, Err(Error::Unsupported { .. })), "{right:?}");
    let shape = generate(&fake, ids(&[vec![1, 2]]), Some(ids(&[vec![1, 1, 1]])), &GenerationConfig::greedy(2));
    assert!(matches!(shape, Err(Error::ShapeMismatch { .. })), "{shape:?}");
    let empty_row = generate(&fake, ids(&[vec![1, 2]]), Some(ids(&[vec![0, 0]])), &GenerationConfig::greedy(2));
    assert!(matches!(empty_row, Err(Error::InvalidState(_))), "{empty_row:?}");
    let too_long = GenerationConfig { max_length: 2, ..GenerationConfig::default() };
    let err = generate(&fake, ids(&[vec![1, 2]]), None, &too_long);
    assert!(matches!(err, Err(Error::InvalidConfig { field: "max_length", .. })), "{err:?}");
    let no_beams = GenerationConfig { num_beams: 0, ..GenerationConfig::greedy(2) };
    let err = generate(&fake, ids(&[vec![1]]), None, &no_beams);
    assert!(matches!(err, Err(Error::InvalidConfig { field: "num_beams", .. })), "{err:?}");
}

#[test]
fn transformers_generation_config_files_parse_with_defaults() {
    let c: GenerationConfig = serde_json::from_str(
        r#"{"_from_model_config": true, "bos_token_id": 1, "eos_token_id": [2, 7], "pad_token_id": null,
            "early_stopping": "never", "temperature": null, "no_repeat_ngram_size": 3, "transformers_version": "5.24.0"}"#,
    )
    .expect("parses");
    assert_eq!((c.eos_token_id.clone(), c.pad_token_id, c.bos_token_id), (vec![2, 7], None, Some(1)));
    assert_eq!((c.early_stopping, c.temperature, c.top_k, c.max_length), (EarlyStopping::Never, 1.0, 50, 20));
    assert_eq!(c.fill_token_id(), 2, "pad falls back to the first eos id");
    assert_eq!(c.unapplied_fields(), vec!["no_repeat_ngram_size".to_string()]);
    let one: GenerationConfig = serde_json::from_str(r#"{"eos_token_id": 2, "early_stopping": true}"#).expect("parses");
    assert_eq!((one.eos_token_id.clone(), one.early_stopping), (vec![2], EarlyStopping::Finished));
    let round: GenerationConfig = serde_json::from_value(serde_json::to_value(&c).expect("serialises")).expect("parses");
    assert_eq!(round, c);
    for (json, field) in [
        (r#"{"do_sample": true, "temperature": 0}"#, "temperature"),
        (r#"{"top_p": 1.5}"#, "top_p"),
        (r#"{"repetition_penalty": 0}"#, "repetition_penalty"),
        (r#"{"max_new_tokens": 0}"#, "max_new_tokens"),
    ] {
        let c: GenerationConfig = serde_json::from_str(json).expect("parses");
        assert!(matches!(c.validate(), Err(Error::InvalidConfig { field: f, .. }) if f == field), "{json}");
    }
    assert!(serde_json::from_str::<GenerationConfig>(r#"{"early_stopping": "sometimes"}"#).is_err());
}
