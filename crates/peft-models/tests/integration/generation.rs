//! Generation against transformers' `generate` (fixtures by `fixtures/gen_generation.py`):
//! greedy and beam search on a left-padded batch, token for token, with eos ids the tiny models
//! emit and the pad fill; a padded row decodes as it would alone.

use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_io::tensors::read_safetensors;
use peft_models::generation::{CausalLm, GenerationConfig, generate};
use peft_models::llama::LlamaForCausalLM;
use serde_json::Value;
use crate::common::fixtures;

fn device() -> Device {
    peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in")
}

fn load(model: &str, device: &Device) -> LlamaForCausalLM {
    LlamaForCausalLM::from_pretrained(fixtures().join("models").join(model), device).expect("fixture model loads")
}

fn ints<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().try_into_vec::<i64>().expect("i64")
}

fn ids(rows: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(rows.concat(), [rows.len(), rows[0].len()]), device)
}

/// Every run of `cases/generation_<model>` against its expected tokens; returns the run names.
fn matches_transformers(model_name: &str) -> Vec<String> {
    let device = device();
    let model = load(model_name, &device);
    let case = fixtures().join("cases").join(format!("generation_{model_name}"));
    let expected = read_safetensors(&case.join("expected.safetensors")).expect("expected outputs");
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(case.join("case.json")).expect("case.json")).expect("json");
    let input_ids = Tensor::<2, Int>::from_data(expected["input_ids"].clone(), &device);
    let mask = Tensor::<2, Int>::from_data(expected["attention_mask"].clone(), &device);
    let runs = meta["runs"].as_object().expect("runs");
    assert!(runs.len() >= 8, "{model_name}: greedy, beam and penalty runs");
    for (run, kw) in runs {
        let config: GenerationConfig = serde_json::from_value(kw.clone()).expect("a transformers generation config");
        let out = generate(&model, input_ids.clone(), Some(mask.clone()), &config).expect("generates");
        let want = &expected[run.as_str()];
        let (got, shape) = out.padded();
        assert_eq!(shape.to_vec(), want.shape().to_vec(), "{model_name}/{run}: shape; got {:?}", out.tokens);
        assert_eq!(got, want.clone().convert::<i64>().try_into_vec::<i64>().expect("i64"), "{model_name}/{run}");
        assert_eq!(ints(out.to_tensor(&device)), got);
    }
    runs.keys().cloned().collect()
}

#[test]
fn llama_greedy_and_beam_search_match_transformers() {
    let runs = matches_transformers("llama");
    assert!(runs.iter().any(|r| r == "beam_early") && runs.iter().any(|r| r == "greedy_repetition"));
}

#[test]
fn smollm_greedy_and_beam_search_match_transformers() {
    matches_transformers("smollm");
}

#[test]
fn fixtures_exercise_eos_padding_and_early_stopping() {
    // The checks above only mean something if rows stop early, at different steps, and the two
    // early_stopping settings give different beams somewhere.
    let case = |m: &str| read_safetensors(&fixtures().join(format!("cases/generation_{m}/expected.safetensors"))).expect("case");
    let (llama, smollm) = (case("llama"), case("smollm"));
    let row_lens = |t: &peft_io::tensors::TensorMap, run: &str| {
        let v = t[run].clone().convert::<i64>().try_into_vec::<i64>().expect("i64");
        let width = t[run].shape()[1];
        v.chunks(width).map(|r| r.iter().filter(|x| **x != 95).count()).collect::<Vec<_>>()
    };
    let greedy = row_lens(&llama, "greedy");
    assert!(greedy[0] < greedy[1], "row 0 stops early at an eos id: {greedy:?}");
    let tokens = |run: &str| smollm[run].clone().convert::<i64>().try_into_vec::<i64>().expect("i64");
    assert_ne!(tokens("beam"), tokens("beam_early"));
}

#[test]
fn llama_left_padded_rows_decode_as_alone() {
    let device = device();
    let model = load("llama", &device);
    let long = vec![42i64, 24, 78, 82, 18, 41, 77];
    let short = vec![67i64, 78, 38, 4];
    let padded = ids(&[long.clone(), [vec![0; 3], short.clone()].concat()], &device);
    let mask = ids(&[vec![1; 7], vec![0, 0, 0, 1, 1, 1, 1]], &device);
    for beams in [1, 3] {
        let config = GenerationConfig { num_beams: beams, ..GenerationConfig::greedy(10) };
        let both = generate(&model, padded.clone(), Some(mask.clone()), &config).expect("batch");
        let alone = generate(&model, ids(std::slice::from_ref(&short), &device), None, &config).expect("alone");
        assert_eq!(both.tokens[1], alone.tokens[0], "beams {beams}");
        let first = generate(&model, ids(std::slice::from_ref(&long), &device), None, &config).expect("alone");
        assert_eq!(both.tokens[0], first.tokens[0], "beams {beams}");
    }
    // The cached forward places the padded row's tokens at 0.. (transformers' generate positions):
    // its logits equal the row's alone, also after a step through the cache.
    let mut cache = CausalLm::new_cache(&model);
    let batch = model.forward_cached(padded, Some(mask), &mut cache).narrow(0, 1, 1).narrow(1, 3, 4);
    let mut alone_cache = CausalLm::new_cache(&model);
    let alone = model.forward_cached(ids(std::slice::from_ref(&short), &device), None, &mut alone_cache);
    let diff = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>();
    assert!(diff(batch, alone) < 1e-5);
    let next = model.forward_cached(ids(&[vec![5], vec![5]], &device), None, &mut cache).narrow(0, 1, 1);
    let next_alone = model.forward_cached(ids(&[vec![5]], &device), None, &mut alone_cache);
    assert!(diff(next, next_alone) < 1e-5);
}

#[test]
fn generation_config_is_read_from_a_model_folder() {
    let config = GenerationConfig::from_pretrained(fixtures().join("models/llama")).expect("reads");
    assert_eq!((config.eos_token_id.clone(), config.bos_token_id, config.fill_token_id()), (vec![2], Some(1), 2));
    assert!(config.unapplied_fields().is_empty(), "{:?}", config.unapplied_fields());
    let defaults = GenerationConfig::from_pretrained(fixtures().join("models/bert")).expect("no file: defaults");
    assert_eq!(defaults, GenerationConfig::default());
    let broken = tempfile::tempdir().expect("tempdir");
    std::fs::write(broken.path().join("generation_config.json"), r#"{"num_beams": "three"}"#).expect("write");
    let err = GenerationConfig::from_pretrained(broken.path()).expect_err("not a number");
    assert!(err.to_string().contains("generation_config.json"), "{err}");
}
