//! T5 and mT5 against transformers (fixtures made by `fixtures/gen_t5.py`): seq2seq logits of
//! the tied, rescaled T5 v1.0 and the gated, untied mT5; encoder features; greedy generation
//! token for token; cached decoding against full forwards; prefix caches; loading errors.

use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{AdapterSites, Error, SiteKind};
use peft_io::tensors::{TensorMap, read_safetensors};
use peft_models::cache::{KvCache, LayerKv};
use peft_models::generation::Seq2SeqLm;
use peft_models::t5::{T5Cache, T5EncoderModel, T5ForConditionalGeneration, T5ForTokenClassification, shift_right};
use crate::common::fixtures;

/// How far from the Python reference outputs may lie on the run's backend (one table:
/// `Backend::tolerance`, per backend and dtype).
static TOLERANCE: std::sync::LazyLock<f32> = std::sync::LazyLock::new(|| peft_core::backend::tolerance(burn::tensor::DType::F32));

fn device() -> Device {
    peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in")
}

fn load(model: &str) -> T5ForConditionalGeneration {
    T5ForConditionalGeneration::from_pretrained(fixtures().join("models").join(model), &device()).expect("fixture model loads")
}

fn expected(case: &str) -> TensorMap {
    read_safetensors(&fixtures().join("cases").join(case).join("expected.safetensors")).expect("fixture case")
}

fn ints(expected: &TensorMap, key: &str) -> Tensor<2, Int> {
    Tensor::from_data(expected[key].clone(), &device())
}

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32")
}

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes");
    floats(a).iter().zip(floats(b)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The fixture's encoder inputs, mask and decoder inputs.
fn inputs(case: &TensorMap) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Int>) {
    (ints(case, "input_ids"), ints(case, "attention_mask"), ints(case, "decoder_input_ids"))
}

fn base_logits_diff(model: &str, case: &str) -> f32 {
    let case = expected(case);
    let (ids, mask, decoder_ids) = inputs(&case);
    let ours = load(model).forward(ids, Some(mask), decoder_ids);
    max_diff(ours, Tensor::from_data(case["base"].clone(), &device()))
}

#[test]
fn t5_tied_rescaled_head_matches_transformers() {
    let diff = base_logits_diff("t5", "t5_qv");
    assert!(diff < *TOLERANCE, "max abs diff {diff}");
    let model = load("t5");
    assert!(model.lm_head_tied && model.config().scales_decoder_output());
    assert_eq!(model.tied_weights(), vec![("lm_head.weight".to_string(), "shared.weight".to_string())]);
    let table = model.shared.base_layer.weight.val();
    assert_eq!(max_diff(table.transpose(), model.lm_head.base_layer.weight.val()), 0.0);
}

#[test]
fn mt5_gated_untied_matches_transformers() {
    assert!(base_logits_diff("mt5", "mt5_all_linear") < *TOLERANCE);
    let model = load("mt5");
    assert!(!model.lm_head_tied && !model.config().scales_decoder_output());
    assert!(model.tied_weights().is_empty());
    assert_eq!(model.decoder.block.len(), 3, "num_decoder_layers");
}

#[test]
fn encoder_features_match_transformers() {
    let case = expected("t5_features");
    let model = T5EncoderModel::from_pretrained(fixtures().join("models/t5"), &device()).expect("encoder loads");
    let out = model.forward(ints(&case, "input_ids"), Some(ints(&case, "attention_mask")));
    assert!(max_diff(out, Tensor::from_data(case["base"].clone(), &device())) < *TOLERANCE);
}

/// Python's `generate` rows less the start token, cut after the first eos (then only padding).
fn python_rows(case: &TensorMap, key: &str, eos: u32) -> Vec<Vec<u32>> {
    let shape = case[key].shape().to_vec();
    let v: Vec<i64> = case[key].clone().convert::<i64>().try_into_vec().expect("i64");
    v.chunks(shape[1])
        .map(|row| {
            let mut out: Vec<u32> = Vec::new();
            for t in &row[1..] {
                out.push(*t as u32);
                if *t as u32 == eos {
                    break;
                }
            }
            out
        })
        .collect()
}

#[test]
fn greedy_generation_matches_transformers() {
    for (model_name, case_name) in [("t5", "t5_qv"), ("mt5", "mt5_all_linear")] {
        let model = load(model_name);
        let case = expected(case_name);
        let (ids, mask, _) = inputs(&case);
        let ours = model.generate_greedy(ids, Some(mask), 8);
        assert_eq!(ours, python_rows(&case, "generated_base", 1), "{model_name}");
    }
}

#[test]
fn cached_steps_equal_one_forward() {
    for name in ["t5", "mt5"] {
        let model = load(name);
        let case = expected("t5_qv");
        let (ids, mask, decoder_ids) = inputs(&case);
        let encoder = model.encode(ids, Some(mask));
        let full = model.decode(decoder_ids.clone(), &encoder);
        let mut cache = model.new_decoder_cache();
        let mut steps = vec![model.decode_cached(decoder_ids.clone().narrow(1, 0, 3), &encoder, &mut cache)];
        for t in 3..7 {
            steps.push(model.decode_cached(decoder_ids.clone().narrow(1, t, 1), &encoder, &mut cache));
        }
        assert_eq!(cache.seen(), 7);
        assert!(cache.cross_attention(0).is_some(), "cross-attention keys are kept");
        assert!(max_diff(Tensor::cat(steps, 1), full) < 1e-5, "{name}");
    }
}

#[test]
fn masked_prefix_cache_is_invisible_but_shifts_nothing_else() {
    let model = load("mt5");
    let case = expected("t5_qv");
    let (ids, mask, decoder_ids) = inputs(&case);
    let encoder = model.encode(ids, Some(mask));
    let (heads, d_kv, layers) = (model.config().num_heads, model.config().d_kv, model.decoder.block.len());
    let prefix = |masked: bool| {
        let zeros = || Tensor::<4>::zeros([2, heads, 2, d_kv], &device());
        let kv = (0..layers).map(|_| LayerKv { key: zeros(), value: zeros() }).collect();
        let mask = masked.then(|| Tensor::<2, Int>::zeros([2, 2], &device()));
        T5Cache::with_prefix(KvCache::from_prefix(kv, mask))
    };
    let plain = model.decode(decoder_ids.clone(), &encoder);
    let embeds = model.embed(decoder_ids);
    let seen = model.decode_embeds(embeds.clone(), None, &encoder, Some(&mut prefix(false)));
    assert!(max_diff(seen, plain.clone()) > 1e-3, "an unmasked prefix is attended");
    // Masked out, the prefix only moves the decoder positions by 2, which relative buckets of
    // key - query do not see.
    let hidden = model.decode_embeds(embeds, None, &encoder, Some(&mut prefix(true)));
    assert!(max_diff(hidden, plain) < 1e-4);
}

#[test]
fn shift_right_starts_and_replaces_ignored_labels() {
    let labels = Tensor::<2, Int>::from_data(TensorData::new(vec![5i64, 6, -100, 7], [1, 4]), &device());
    let shifted = shift_right(labels, 0, 9).into_data().convert::<i64>().try_into_vec::<i64>().expect("i64");
    assert_eq!(shifted, vec![0, 5, 6, 9]);
    let case = expected("t5_qv");
    let ours = shift_right(ints(&case, "labels"), 0, 0);
    assert_eq!(max_diff(ours.float(), ints(&case, "decoder_input_ids").float()), 0.0, "the fixture's decoder inputs");
}

#[test]
fn sites_have_transformers_paths() {
    let model = load("mt5");
    let sites = model.site_paths();
    // shared; encoder 2 x (4 attention + 3 FFN) + 1 relative table; decoder 3 x (8 + 3) + 1; lm_head
    assert_eq!(sites.len(), 1 + (2 * 7 + 1) + (3 * 11 + 1) + 1);
    assert_eq!(sites[0], ("shared".to_string(), SiteKind::Embedding));
    assert_eq!(sites[1].0, "encoder.block.0.layer.0.SelfAttention.q");
    assert_eq!(sites[5], ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias".to_string(), SiteKind::Embedding));
    assert_eq!(sites[6].0, "encoder.block.0.layer.1.DenseReluDense.wi_0");
    let names: Vec<&str> = sites.iter().map(|(p, _)| p.as_str()).collect();
    assert!(names.contains(&"decoder.block.2.layer.1.EncDecAttention.v"));
    assert!(names.contains(&"decoder.block.1.layer.2.DenseReluDense.wo"));
    assert_eq!(sites.last().map(|s| s.0.as_str()), Some("lm_head"));
    assert_eq!(model.default_target_modules(), vec!["q".to_string(), "v".to_string()]);
    let t5 = load("t5").site_paths();
    assert!(t5.iter().any(|(p, _)| p == "decoder.block.0.layer.2.DenseReluDense.wi"));
}

#[test]
fn token_classification_reads_the_encoder_with_a_new_head() {
    let dir = fixtures().join("models/t5");
    let err = T5ForTokenClassification::from_pretrained_with(&dir, &device(), false).expect_err("no classifier in the file");
    assert!(matches!(&err, Error::MissingTensor { key, .. } if key == "classifier.weight"), "{err}");
    let model = T5ForTokenClassification::from_pretrained_with(&dir, &device(), true).expect("fresh head");
    let encoder = T5EncoderModel::from_pretrained(&dir, &device()).expect("encoder");
    assert_eq!(max_diff(model.transformer.shared.base_layer.weight.val(), encoder.shared.base_layer.weight.val()), 0.0);
    let case = expected("t5_features");
    let logits = model.forward(ints(&case, "input_ids"), None);
    assert_eq!(logits.dims(), [2, 7, 2]);
}

#[test]
fn loading_errors_name_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = T5ForConditionalGeneration::from_pretrained(dir.path(), &device()).expect_err("empty folder");
    assert!(matches!(&err, Error::Io { path, .. } if path.ends_with("config.json")), "{err}");
    let config = std::fs::read_to_string(fixtures().join("models/t5/config.json")).expect("config");
    std::fs::write(dir.path().join("config.json"), config.replace("\"relu\"", "\"gated-tanh\"")).expect("write");
    let err = T5ForConditionalGeneration::from_pretrained(dir.path(), &device()).expect_err("bad activation");
    assert!(matches!(&err, Error::Unsupported { what, .. } if what.contains("gated-tanh")), "{err}");
    std::fs::write(dir.path().join("config.json"), config).expect("write");
    let err = T5ForConditionalGeneration::from_pretrained(dir.path(), &device()).expect_err("no weights");
    assert!(matches!(&err, Error::Io { path, .. } if path.ends_with("model.safetensors")), "{err}");
}

#[test]
fn task_heads_match_transformers() {
    use peft_models::t5::{T5ForQuestionAnswering, T5ForSequenceClassification};
    let case = expected("t5_heads");
    let (ids, mask) = (ints(&case, "input_ids"), ints(&case, "attention_mask"));
    let dir = |name: &str| fixtures().join("models").join(name);
    let expect = |key: &str| case[key].clone();

    let seq = T5ForSequenceClassification::from_pretrained(dir("t5_seq_cls"), &device()).expect("loads");
    let logits = seq.forward(ids.clone(), Some(mask.clone())).expect("every row has an eos");
    assert!(max_diff(logits, Tensor::from_data(expect("t5_seq_cls"), &device())) < *TOLERANCE);
    let no_eos = ids.clone().mask_fill(ids.clone().equal_elem(1), 2);
    assert!(matches!(seq.forward(no_eos, Some(mask.clone())), Err(Error::InvalidState(_))));

    let token = T5ForTokenClassification::from_pretrained(dir("t5_token_cls"), &device()).expect("loads");
    let logits = token.forward(ids.clone(), Some(mask.clone()));
    assert!(max_diff(logits, Tensor::from_data(expect("t5_token_cls"), &device())) < *TOLERANCE);

    let qa = T5ForQuestionAnswering::from_pretrained(dir("t5_qa"), &device()).expect("loads");
    let (start, end) = qa.forward(ids, Some(mask));
    assert!(max_diff(start, Tensor::from_data(expect("t5_qa.start"), &device())) < *TOLERANCE);
    assert!(max_diff(end, Tensor::from_data(expect("t5_qa.end"), &device())) < *TOLERANCE);
    let sites = seq.site_paths();
    assert_eq!(sites[0].0, "transformer.shared");
    assert!(sites.iter().any(|(p, _)| p == "transformer.decoder.block.1.layer.1.EncDecAttention.q"));
    assert_eq!(seq.output_head_paths(), vec!["classification_head.dense".to_string(), "classification_head.out_proj".to_string()]);
}

#[test]
fn selected_rows_of_the_cache_continue_their_rows() {
    use peft_models::generation::SelectRows;
    let model = load("mt5");
    let case = expected("t5_qv");
    let (ids, mask, decoder_ids) = inputs(&case);
    let encoder = model.encode(ids, Some(mask));
    let full = model.decode(decoder_ids.clone(), &encoder);
    let mut cache = model.new_decoder_cache();
    model.decode_cached(decoder_ids.clone().narrow(1, 0, 4), &encoder, &mut cache);
    // Beam search reorders and repeats rows: rows [1, 0, 1].
    let rows = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0, 1], [3]), &device());
    let mut cache = cache.select_rows(rows.clone());
    let encoder = encoder.select_rows(rows.clone());
    let rest = model.decode_cached(decoder_ids.select(0, rows.clone()).narrow(1, 4, 3), &encoder, &mut cache);
    assert!(max_diff(rest, full.select(0, rows).narrow(1, 4, 3)) < 1e-5);
}
