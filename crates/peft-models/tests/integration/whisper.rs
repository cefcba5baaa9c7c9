//! Whisper against transformers (fixtures made by `fixtures/gen_whisper.py`): logits, encoder and
//! decoder states, the sinusoidal table, cached decoding against full forwards, greedy ids against
//! `generate(do_sample=False)`, adapter sites and typed errors.

use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{AdapterSites, Error, SiteKind};
use peft_io::tensors::{TensorMap, read_safetensors};
use peft_models::generation::{EncoderOutput, Seq2SeqLm, SelectRows};
use peft_models::cache::KvCache;
use peft_models::whisper::{WhisperCache, WhisperConfig, WhisperForConditionalGeneration, WhisperModel, sinusoids};
use std::path::PathBuf;
use crate::common::fixtures;

/// How far from the Python reference outputs may lie on the run's backend (one table:
/// `Backend::tolerance`, per backend and dtype).
static TOLERANCE: std::sync::LazyLock<f32> = std::sync::LazyLock::new(|| peft_core::backend::tolerance(burn::tensor::DType::F32));

fn device() -> Device {
    peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in")
}

fn model_dir() -> PathBuf {
    fixtures().join("models/whisper")
}

fn load(device: &Device) -> WhisperForConditionalGeneration {
    WhisperForConditionalGeneration::from_pretrained(model_dir(), device).expect("fixture model loads")
}

fn expected() -> TensorMap {
    let path = fixtures().join("cases/whisper_qv/expected.safetensors");
    read_safetensors(&path).expect("fixture case")
}

fn features(expected: &TensorMap, device: &Device) -> Tensor<3> {
    Tensor::from_data(expected["input_features"].clone(), device)
}

fn decoder_ids(expected: &TensorMap, device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(expected["input_ids"].clone(), device)
}

fn floats(data: TensorData) -> Vec<f32> {
    data.convert::<f32>().try_into_vec::<f32>().expect("f32")
}

fn max_diff(ours: TensorData, theirs: &TensorData) -> f32 {
    assert_eq!(ours.shape(), theirs.shape(), "shapes");
    floats(ours).iter().zip(floats(theirs.clone())).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn logits_match_transformers() {
    let device = device();
    let expected = expected();
    let model = load(&device);
    let logits = model.forward(features(&expected, &device), decoder_ids(&expected, &device)).expect("runs");
    let diff = max_diff(logits.into_data(), &expected["base"]);
    assert!(diff < *TOLERANCE, "logits differ by {diff}");
}

#[test]
fn whisper_model_states_match_transformers() {
    let device = device();
    let expected = expected();
    // A bare WhisperModel reads the conditional-generation checkpoint (prefix `model.` stripped).
    let model = WhisperModel::from_pretrained(model_dir(), &device).expect("loads");
    let encoded = model.encode(features(&expected, &device)).expect("encodes");
    assert!(max_diff(encoded.hidden.into_data(), &expected["base_encoder_hidden"]) < *TOLERANCE, "encoder");
    let hidden = model.forward(features(&expected, &device), decoder_ids(&expected, &device), None).expect("runs");
    assert!(max_diff(hidden.into_data(), &expected["base_decoder_hidden"]) < *TOLERANCE, "decoder");
}

#[test]
fn sinusoidal_positions_equal_the_checkpoint() {
    let device = device();
    let model = load(&device);
    let stored = model.model.encoder.embed_positions.weight.val();
    let [rows, width] = stored.dims();
    assert!(max_diff(sinusoids(rows, width, &device).into_data(), &stored.into_data()) < 1e-6);
}

#[test]
fn cached_decoding_equals_full_forward() {
    let device = device();
    let expected = expected();
    let model = load(&device);
    let ids = decoder_ids(&expected, &device);
    let [batch, len] = ids.dims();
    let encoder = model.encode(features(&expected, &device)).expect("encodes");
    let full = model.decode(ids.clone(), None, &encoder, None).expect("full");
    let mut cache = model.new_decoder_cache();
    // Three tokens at once, then one at a time, through the generation contract.
    let mut steps = vec![model.decode(ids.clone().narrow(1, 0, 3), None, &encoder, Some(&mut cache)).expect("prefix")];
    for t in 3..len {
        steps.push(model.decode_cached(ids.clone().narrow(1, t, 1), &encoder, &mut cache));
    }
    assert_eq!(cache.seen(), len);
    let cached = Tensor::cat(steps, 1);
    assert!(max_diff(cached.into_data(), &full.clone().into_data()) < *TOLERANCE);

    // Beam search reorders rows of the cache and the encoding: the next step follows them.
    let rows = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0], [batch]), &device);
    let mut swapped = cache.clone().select_rows(rows.clone());
    let swapped_encoder: EncoderOutput = encoder.clone().select_rows(rows.clone());
    let next = ids.clone().narrow(1, 0, 1);
    let straight = model.decode_cached(next.clone(), &encoder, &mut cache);
    let reordered = model.decode_cached(next.select(0, rows.clone()), &swapped_encoder, &mut swapped);
    assert!(max_diff(reordered.into_data(), &straight.select(0, rows).into_data()) < *TOLERANCE);
}

#[test]
fn a_self_attention_prefix_shifts_positions() {
    let device = device();
    let expected = expected();
    let model = load(&device);
    let ids = decoder_ids(&expected, &device);
    let len = ids.dims()[1];
    let encoder = model.encode(features(&expected, &device)).expect("encodes");
    let full = model.decode(ids.clone(), None, &encoder, None).expect("full");
    // Keys and values of the first 3 tokens handed over as a prefix (as prefix tuning does), with
    // an empty cross-attention cache: the rest must continue at position 3.
    let mut first = model.new_decoder_cache();
    model.decode(ids.clone().narrow(1, 0, 3), None, &encoder, Some(&mut first)).expect("prefix");
    let layers = (0..first.self_attn.num_layers()).map(|i| first.self_attn.layer(i).expect("filled").clone()).collect();
    let mut cache = WhisperCache::from_prefix(KvCache::from_prefix(layers, None));
    let rest = model.decode(ids.narrow(1, 3, len - 3), None, &encoder, Some(&mut cache)).expect("rest");
    assert!(max_diff(rest.into_data(), &full.narrow(1, 3, len - 3).into_data()) < *TOLERANCE);
}

/// The expected row up to and including the first eos.
fn until_eos(ids: &TensorData, row: usize, eos: u32) -> Vec<u32> {
    let width = ids.shape()[1];
    let all: Vec<i64> = ids.clone().convert::<i64>().try_into_vec().expect("ints");
    let mut out = Vec::new();
    for &id in &all[row * width..(row + 1) * width] {
        out.push(id as u32);
        if id as u32 == eos {
            break;
        }
    }
    out
}

#[test]
fn greedy_ids_match_generate() {
    let device = device();
    let expected = expected();
    let model = load(&device);
    let eos = model.config().eos_token_ids()[0];
    let max_new = expected["greedy_base"].shape()[1];
    let ours = model.generate_greedy(features(&expected, &device), max_new).expect("generates");
    let theirs: Vec<Vec<u32>> = (0..2).map(|row| until_eos(&expected["greedy_base"], row, eos)).collect();
    assert_eq!(ours, theirs);
    assert!(ours[0].len() < max_new && ours[0].last() == Some(&eos), "row 0 stops at eos: {ours:?}");
}

#[test]
fn sites_have_transformers_paths() {
    let model = load(&device());
    let sites = model.site_paths();
    // conv1, conv2, 2 encoder layers x 6, embed_tokens, 2 decoder layers x 10, proj_out.
    assert_eq!(sites.len(), 2 + 12 + 1 + 20 + 1);
    assert_eq!(sites[0], ("model.encoder.conv1".to_string(), SiteKind::Conv1d));
    assert_eq!(sites[2].0, "model.encoder.layers.0.self_attn.q_proj");
    assert!(sites.iter().any(|(p, _)| p == "model.decoder.layers.1.encoder_attn.v_proj"));
    assert_eq!(sites[14], ("model.decoder.embed_tokens".to_string(), SiteKind::Embedding));
    assert_eq!(sites[35], ("proj_out".to_string(), SiteKind::Linear));
    assert_eq!(model.output_head_paths(), vec!["proj_out".to_string()]);
    assert_eq!(model.tied_weights(), vec![("proj_out.weight".to_string(), "model.decoder.embed_tokens.weight".to_string())]);
    // The Python library has no default target modules for whisper.
    assert!(model.default_target_modules().is_empty());
    let head = model.proj_out.base_layer.weight.val();
    let table = model.model.decoder.embed_tokens.base_layer.weight.val();
    assert!(max_diff(table.transpose().into_data(), &head.into_data()) == 0.0, "proj_out is a copy of the table");
    assert!(model.model.encoder.layers[0].self_attn.k_proj.base_layer.bias.is_none());
}

#[test]
fn wrong_inputs_are_typed_errors() {
    let device = device();
    let model = load(&device);
    let short = Tensor::<3>::zeros([1, 8, 30], &device);
    assert!(matches!(model.encode(short), Err(Error::ShapeMismatch { .. })));
    let good = Tensor::<3>::zeros([1, 8, 32], &device);
    let positions = model.config().max_target_positions;
    assert!(matches!(model.generate_greedy(good.clone(), positions), Err(Error::InvalidState(_))));
    let too_long = Tensor::<2, Int>::zeros([1, positions + 1], &device);
    assert!(matches!(model.forward(good, too_long), Err(Error::InvalidState(_))));
    let mut config = WhisperConfig::from_file(model_dir().join("config.json")).expect("config");
    config.model_type = "t5".into();
    assert!(matches!(WhisperForConditionalGeneration::from_pretrained_with_config(model_dir(), config, &device), Err(Error::Unsupported { .. })));
}

#[test]
fn loss_shifts_labels_like_transformers() {
    let device = device();
    let expected = expected();
    let model = load(&device);
    let labels = decoder_ids(&expected, &device);
    let (logits, loss) = model.forward_with_loss(features(&expected, &device), None, labels.clone()).expect("runs");
    // Without decoder ids the decoder reads [start, labels[..-1]]: the same as passing them.
    let shifted = peft_models::whisper::shift_tokens_right(labels.clone(), 0, model.config().decoder_start_token_id);
    let (explicit, _) = model.forward_with_loss(features(&expected, &device), Some(shifted), labels).expect("runs");
    assert_eq!(max_diff(logits.into_data(), &explicit.into_data()), 0.0);
    assert!(loss.into_scalar::<f32>().is_finite());
}
