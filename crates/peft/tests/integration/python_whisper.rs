//! Whisper with LoRA adapters written by the Python library (`fixtures/cases/whisper_*`):
//! q_proj/v_proj and the convolutional front end, outputs, merge, counts, file round trip, loss
//! and gradients, and greedy generation with the adapter.

use crate::common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::cases::{assert_loss_and_gradients, check_case};
use common::fixtures::{Case, root};
use peft::PeftModel;
use peft::models::whisper::WhisperForConditionalGeneration;

fn whisper(device: &Device) -> WhisperForConditionalGeneration {
    WhisperForConditionalGeneration::from_pretrained(root().join("models/whisper"), device).expect("model loads")
}

/// The case's `input_ids` are the decoder input ids; the audio features are fixed per case.
fn check(name: &str) {
    let device = common::device();
    let features: Tensor<3> = Case::load(name).floats("input_features", &device);
    check_case(name, || whisper(&device), |m, ids, _mask| m.forward(features.clone(), ids).expect("runs"));
}

#[test]
fn whisper_q_v() {
    check("whisper_qv");
}

#[test]
fn whisper_conv_front_end_and_fc1() {
    check("whisper_conv");
}

/// The fixture's loss: labels = input_ids with row 1's last two positions ignored, decoder
/// inputs = labels shifted right.
fn gradients(name: &str, expected_count: usize) {
    let device = common::device().autodiff();
    let case = Case::load(name);
    let mut model = PeftModel::from_pretrained(whisper(&device), case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let features: Tensor<3> = case.floats("input_features", &device);
    let labels = case.ints("input_ids", &device);
    let [batch, len] = labels.dims();
    let ignored: Vec<i64> = (0..batch * len).map(|i| i64::from(i / len == 1 && i % len >= len - 2)).collect();
    let ignored = Tensor::<2, Int>::from_data(TensorData::new(ignored, [batch, len]), &device);
    let labels = labels.mask_fill(ignored.equal_elem(1), -100);
    let (_, loss) = model.model().forward_with_loss(features, None, labels).expect("runs");
    assert_eq!(assert_loss_and_gradients(&case, &model, loss), expected_count);
}

#[test]
fn whisper_q_v_gradients_match_python() {
    // A and B of q_proj and v_proj in 2 encoder self-attentions, 2 decoder self- and 2 cross-attentions.
    gradients("whisper_qv", 2 * 2 * 6);
}

#[test]
fn whisper_conv_gradients_match_python() {
    // A and B of conv1, conv2 and four fc1.
    gradients("whisper_conv", 2 * 6);
}

fn rows_until_eos(case: &Case, key: &str, eos: u32) -> Vec<Vec<u32>> {
    let data = &case.expected[key];
    let width = data.shape()[1];
    let ids: Vec<i64> = data.clone().convert::<i64>().try_into_vec().expect("ints");
    ids.chunks(width)
        .map(|row| {
            let end = row.iter().position(|&t| t == i64::from(eos)).map_or(width, |p| p + 1);
            row[..end].iter().map(|&t| t as u32).collect()
        })
        .collect()
}

#[test]
fn greedy_generation_with_the_adapter_matches_python() {
    let device = common::device();
    let case = Case::load("whisper_qv");
    let features: Tensor<3> = case.floats("input_features", &device);
    let mut model = PeftModel::from_pretrained(whisper(&device), case.adapter()).expect("loads");
    let eos = model.model().config().eos_token_ids()[0];
    let max_new = case.expected["greedy_adapted"].shape()[1];
    let adapted = model.model().generate_greedy(features.clone(), max_new).expect("generates");
    assert_eq!(adapted, rows_until_eos(&case, "greedy_adapted", eos));
    let base = model.with_adapters_disabled(|m| m.generate_greedy(features.clone(), max_new)).expect("generates");
    assert_eq!(base, rows_until_eos(&case, "greedy_base", eos));
    assert_ne!(adapted, base, "the adapter changes the transcript");
}
