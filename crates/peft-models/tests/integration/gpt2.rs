//! GPT-2 and BLOOM against transformers (fixtures made by `fixtures/gen_gpt2.py`): every head's
//! base outputs on right- and left-padded batches, greedy generation with left padding, cached
//! decoding against full forwards, tied heads, sites and loading errors.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{AdapterSites, Error, SiteKind};
use peft_io::tensors::{TensorMap, read_safetensors};
use peft_models::bloom::{BloomConfig, BloomForCausalLM, BloomForQuestionAnswering, BloomForSequenceClassification, BloomForTokenClassification, BloomModel};
use peft_models::generation::greedy;
use peft_models::gpt2::{Gpt2Config, Gpt2ForQuestionAnswering, Gpt2ForSequenceClassification, Gpt2ForTokenClassification, Gpt2LMHeadModel, Gpt2Model};
use std::path::PathBuf;
use crate::common::fixtures;

/// How far from the Python reference outputs may lie on the run's backend (one table:
/// `Backend::tolerance`, per backend and dtype).
static TOLERANCE: std::sync::LazyLock<f32> = std::sync::LazyLock::new(|| peft_core::backend::tolerance(burn::tensor::DType::F32));

fn device() -> Device {
    peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in")
}

fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

fn expected(case: &str) -> TensorMap {
    read_safetensors(&fixtures().join("cases").join(case).join("expected.safetensors")).expect("fixture case")
}

fn floats(data: TensorData) -> Vec<f32> {
    data.convert::<f32>().try_into_vec::<f32>().expect("f32")
}

fn ints<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().try_into_vec::<i64>().expect("i64")
}

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    floats(a.into_data()).iter().zip(floats(b.into_data())).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The inputs of `gpt2_heads` for `side` (`right` or `left` padding).
fn inputs(side: &str, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let t = expected("gpt2_heads");
    let get = |k: &str| Tensor::<2, Int>::from_data(t[&format!("{side}.{k}")].clone(), device);
    (get("input_ids"), get("attention_mask"))
}

/// Max |ours - transformers'| of `gpt2_heads`' `<side>.<key>` over real tokens (every value when
/// the output has no token axis).
fn diff_to_python<const D: usize>(side: &str, key: &str, ours: Tensor<D>, mask: Tensor<2, Int>) -> f32 {
    let theirs = expected("gpt2_heads")[&format!("{side}.{key}")].clone();
    assert_eq!(ours.dims().to_vec(), theirs.shape().to_vec(), "{key}: shape");
    let (ours, theirs) = (floats(ours.into_data()), floats(theirs));
    let mask = ints(mask);
    let per_token = if D >= 3 { ours.len() / mask.len() } else { 0 };
    let mut worst = 0f32;
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if per_token == 0 || mask[i / per_token] == 1 {
            worst = worst.max((a - b).abs());
        }
    }
    println!("{side}.{key}: max abs diff {worst:e}");
    worst
}

#[test]
fn gpt2_heads_match_transformers() {
    let device = device();
    let lm = Gpt2LMHeadModel::from_pretrained(model_dir("gpt2"), &device).expect("gpt2");
    let bare = Gpt2Model::from_pretrained(model_dir("gpt2"), &device).expect("bare gpt2 from the LM folder");
    let seq = Gpt2ForSequenceClassification::from_pretrained(model_dir("gpt2_seq_cls"), &device).expect("seq");
    let tok = Gpt2ForTokenClassification::from_pretrained(model_dir("gpt2_token_cls"), &device).expect("tok");
    let qa = Gpt2ForQuestionAnswering::from_pretrained(model_dir("gpt2_qa"), &device).expect("qa");
    for side in ["right", "left"] {
        let (ids, mask) = inputs(side, &device);
        let m = || Some(mask.clone());
        assert!(diff_to_python(side, "gpt2", lm.forward(ids.clone(), m()), mask.clone()) < *TOLERANCE);
        assert!(diff_to_python(side, "gpt2_features", bare.forward(ids.clone(), m()), mask.clone()) < *TOLERANCE);
        assert!(diff_to_python(side, "gpt2_seq_cls", seq.forward(ids.clone(), m()), mask.clone()) < *TOLERANCE);
        assert!(diff_to_python(side, "gpt2_token_cls", tok.forward(ids.clone(), m()), mask.clone()) < *TOLERANCE);
        assert!(diff_to_python(side, "gpt2_qa", qa.forward(ids.clone(), m()), mask.clone()) < *TOLERANCE);
    }
}

#[test]
fn bloom_heads_match_transformers() {
    let device = device();
    let lm = BloomForCausalLM::from_pretrained(model_dir("bloom"), &device).expect("bloom");
    let bare = BloomModel::from_pretrained(model_dir("bloom"), &device).expect("bare bloom from the LM folder");
    let seq = BloomForSequenceClassification::from_pretrained(model_dir("bloom_seq_cls"), &device).expect("seq");
    let tok = BloomForTokenClassification::from_pretrained(model_dir("bloom_token_cls"), &device).expect("tok");
    let qa = BloomForQuestionAnswering::from_pretrained(model_dir("bloom_qa"), &device).expect("qa");
    for side in ["right", "left"] {
        let (ids, mask) = inputs(side, &device);
        let m = || Some(mask.clone());
        assert!(diff_to_python(side, "bloom", lm.forward(ids.clone(), m()), mask.clone()) < *TOLERANCE);
        assert!(diff_to_python(side, "bloom_features", bare.forward(ids.clone(), m()), mask.clone()) < *TOLERANCE);
        assert!(diff_to_python(side, "bloom_seq_cls", seq.forward(ids.clone(), m()), mask.clone()) < *TOLERANCE);
        assert!(diff_to_python(side, "bloom_token_cls", tok.forward(ids.clone(), m()), mask.clone()) < *TOLERANCE);
        assert!(diff_to_python(side, "bloom_qa", qa.forward(ids.clone(), m()), mask.clone()) < *TOLERANCE);
    }
}

/// Python's generated rows, each cut after its first eos (then `generate` pads with the pad id).
fn python_generation(model: &str, eos: u32) -> Vec<Vec<u32>> {
    let t = expected("gpt2_generate");
    let generated = &t[&format!("{model}.generated")];
    let width = generated.shape()[1];
    let values = generated.clone().convert::<i64>().try_into_vec::<i64>().expect("i64");
    values
        .chunks(width)
        .map(|row| {
            let row: Vec<u32> = row.iter().map(|t| *t as u32).collect();
            match row.iter().position(|t| *t == eos) {
                Some(at) => row[..=at].to_vec(),
                None => row,
            }
        })
        .collect()
}

fn generation_inputs(device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let t = expected("gpt2_generate");
    (Tensor::from_data(t["input_ids"].clone(), device), Tensor::from_data(t["attention_mask"].clone(), device))
}

#[test]
fn greedy_generation_with_left_padding_matches_transformers() {
    let device = device();
    let (ids, mask) = generation_inputs(&device);
    let gpt2 = Gpt2LMHeadModel::from_pretrained(model_dir("gpt2"), &device).expect("gpt2");
    let eos = gpt2.config().eos_token_ids()[0];
    let ours = greedy(&gpt2, ids.clone(), Some(mask.clone()), 8, Some(eos));
    assert_eq!(ours, python_generation("gpt2", eos), "gpt2");
    let bloom = BloomForCausalLM::from_pretrained(model_dir("bloom"), &device).expect("bloom");
    let eos = bloom.config().eos_token_ids()[0];
    let ours = greedy(&bloom, ids, Some(mask), 8, Some(eos));
    assert_eq!(ours, python_generation("bloom", eos), "bloom");
}

#[test]
fn left_padded_row_generates_as_unpadded() {
    let device = device();
    let (ids, mask) = generation_inputs(&device);
    let short = ids.clone().narrow(0, 1, 1).narrow(1, 2, 5);
    let gpt2 = Gpt2LMHeadModel::from_pretrained(model_dir("gpt2"), &device).expect("gpt2");
    let padded = gpt2.generate_greedy_masked(ids.clone(), mask.clone(), 8, None);
    assert_eq!(padded[1], gpt2.generate_greedy(short.clone(), 8, None)[0], "gpt2");
    let bloom = BloomForCausalLM::from_pretrained(model_dir("bloom"), &device).expect("bloom");
    let padded = bloom.generate_greedy_masked(ids, mask, 8, None);
    assert_eq!(padded[1], bloom.generate_greedy(short, 8, None)[0], "bloom");
}

#[test]
fn cached_chunks_equal_one_forward() {
    let device = device();
    let (ids, _) = generation_inputs(&device);
    let row = ids.narrow(0, 0, 1);
    let gpt2 = Gpt2LMHeadModel::from_pretrained(model_dir("gpt2"), &device).expect("gpt2");
    let mut cache = gpt2.new_cache();
    let first = gpt2.forward_cached(row.clone().narrow(1, 0, 4), None, &mut cache);
    let second = gpt2.forward_cached(row.clone().narrow(1, 4, 3), None, &mut cache);
    assert_eq!(cache.seen(), 7);
    assert!(max_diff(Tensor::cat(vec![first, second], 1), gpt2.forward(row.clone(), None)) < 1e-5, "gpt2");
    let bloom = BloomForCausalLM::from_pretrained(model_dir("bloom"), &device).expect("bloom");
    let mut cache = bloom.new_cache();
    let first = bloom.forward_cached(row.clone().narrow(1, 0, 4), None, &mut cache);
    let second = bloom.forward_cached(row.clone().narrow(1, 4, 3), None, &mut cache);
    assert!(max_diff(Tensor::cat(vec![first, second], 1), bloom.forward(row, None)) < 1e-5, "bloom");
}

#[test]
fn tied_heads_and_sites() {
    let device = device();
    let gpt2 = Gpt2LMHeadModel::from_pretrained(model_dir("gpt2"), &device).expect("gpt2");
    let table = gpt2.transformer.wte.base_layer.weight.val();
    assert_eq!(max_diff(table.transpose(), gpt2.lm_head.base_layer.weight.val()), 0.0, "lm_head copies wte");
    assert_eq!(gpt2.tied_weights(), vec![("lm_head.weight".to_string(), "transformer.wte.weight".to_string())]);
    assert_eq!(gpt2.default_target_modules(), vec!["c_attn".to_string()]);
    let sites = gpt2.site_paths();
    // wte, wpe; per block the attention hook (LLaMA-Adapter) and four linears; lm_head.
    assert_eq!(sites.len(), 2 + 2 * 5 + 1);
    assert_eq!(sites[2], ("transformer.h.0.attn".to_string(), SiteKind::Attention));
    assert_eq!(sites[3], ("transformer.h.0.attn.c_attn".to_string(), SiteKind::Linear));
    assert!(gpt2.transformer.h[0].attn.c_attn.fan_in_fan_out && !gpt2.lm_head.fan_in_fan_out);

    let bloom = BloomForCausalLM::from_pretrained(model_dir("bloom"), &device).expect("bloom");
    let table = bloom.transformer.word_embeddings.base_layer.weight.val();
    assert_eq!(max_diff(table.transpose(), bloom.lm_head.base_layer.weight.val()), 0.0, "lm_head copies the table");
    assert_eq!(bloom.tied_weights(), vec![("lm_head.weight".to_string(), "transformer.word_embeddings.weight".to_string())]);
    assert_eq!(bloom.default_target_modules(), vec!["query_key_value".to_string()]);
    let paths: Vec<String> = bloom.site_paths().into_iter().map(|(p, _)| p).collect();
    assert_eq!(&paths[..3], ["transformer.word_embeddings", "transformer.h.0.self_attention.query_key_value", "transformer.h.0.self_attention.dense"]);
}

#[test]
fn loading_errors_are_typed() {
    let device = device();
    // A causal-LM folder has no score: refused unless a new head is asked for.
    let err = Gpt2ForSequenceClassification::from_pretrained(model_dir("gpt2"), &device).expect_err("no score");
    assert!(matches!(&err, Error::MissingTensor { key, .. } if key == "score.weight"), "{err}");
    Gpt2ForSequenceClassification::from_pretrained_with(model_dir("gpt2"), &device, true).expect("new head");
    let err = BloomForTokenClassification::from_pretrained(model_dir("bloom"), &device).expect_err("no classifier");
    assert!(matches!(&err, Error::MissingTensor { key, .. } if key == "classifier.weight"), "{err}");
    // Each family refuses the other's config.
    assert!(matches!(Gpt2LMHeadModel::from_pretrained(model_dir("bloom"), &device), Err(Error::Unsupported { .. })));
    assert!(matches!(BloomForCausalLM::from_pretrained(model_dir("gpt2"), &device), Err(Error::Unsupported { .. })));
}

#[test]
fn new_models_run_without_weights() {
    let device = device();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2, 3], [1, 3]), &device);
    let config: Gpt2Config = serde_json::from_str(r#"{"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 8, "vocab_size": 20}"#).expect("config");
    config.validate().expect("valid");
    let gpt2 = Gpt2LMHeadModel::new(&config, &device);
    let logits = gpt2.forward(ids.clone(), None);
    assert_eq!(logits.dims(), [1, 3, 20]);
    assert!(floats(logits.into_data()).iter().all(|x| x.is_finite()));
    let (h, inner) = (16, 64);
    let block = 4 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * inner + inner) + (inner * h + h);
    assert_eq!(gpt2.num_params(), 20 * h + 8 * h + block + 2 * h + h * 20, "wte, wpe, block, ln_f, lm_head copy");

    let config: BloomConfig = serde_json::from_str(r#"{"hidden_size": 16, "n_layer": 1, "n_head": 2, "vocab_size": 20}"#).expect("config");
    config.validate().expect("valid");
    let bloom = BloomForCausalLM::new(&config, &device);
    let logits = bloom.forward(ids, None);
    assert_eq!(logits.dims(), [1, 3, 20]);
    assert!(floats(logits.into_data()).iter().all(|x| x.is_finite()));
}
