//! T5 and mT5 with LoRA adapters written by the Python library (`fixtures/cases/t5_*`, `mt5_*`):
//! seq2seq logits, merges, counts, saved files, loss and gradients, greedy generation.

use crate::common;

use burn::module::{Flag, Module, ModuleMapper, Param};
use burn::tensor::{Int, Tensor};
use burn::optim::GradientsParams;
use common::cases::{TOL, check_case};
use common::fixtures::{Case, max_abs_diff, root};
use peft::PeftModel;
use peft::models::t5::{T5EncoderModel, T5ForConditionalGeneration};

fn seq2seq(model: &str) -> T5ForConditionalGeneration {
    T5ForConditionalGeneration::from_pretrained(root().join("models").join(model), &common::device()).expect("model loads")
}

/// `check_case` on decoder logits for the case's `decoder_input_ids`.
fn check_seq2seq(case: &str, model: &str) {
    let decoder_ids = Case::load(case).ints("decoder_input_ids", &common::device());
    check_case(case, || seq2seq(model), |m, ids, mask| m.forward(ids, Some(mask), decoder_ids.clone()));
}

#[test]
fn t5_q_v() {
    check_seq2seq("t5_qv", "t5");
}

#[test]
fn mt5_all_linear() {
    check_seq2seq("mt5_all_linear", "mt5");
}

#[test]
fn t5_encoder_feature_extraction() {
    let device = common::device();
    let load = || T5EncoderModel::from_pretrained(root().join("models/t5"), &device).expect("encoder");
    check_case("t5_features", load, |m, ids, mask| m.forward(ids, Some(mask)));
}

/// Python's `generate` rows less the start token, cut after the first eos.
fn python_rows(case: &Case, key: &str, eos: u32) -> Vec<Vec<u32>> {
    let width = case.expected[key].shape()[1];
    let v: Vec<i64> = case.expected[key].clone().convert::<i64>().try_into_vec().expect("i64");
    v.chunks(width)
        .map(|row| {
            let tokens = row[1..].iter().map(|t| *t as u32);
            let end = row[1..].iter().position(|t| *t as u32 == eos).map_or(width - 1, |p| p + 1);
            tokens.take(end).collect()
        })
        .collect()
}

#[test]
fn greedy_generation_with_the_adapter_matches_python() {
    let device = common::device();
    for (case_name, model) in [("t5_qv", "t5"), ("mt5_all_linear", "mt5")] {
        let case = Case::load(case_name);
        let mut peft = PeftModel::from_pretrained(seq2seq(model), case.adapter()).expect("adapter loads");
        let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
        let ours = peft.model().generate_greedy(ids.clone(), Some(mask.clone()), 8);
        assert_eq!(ours, python_rows(&case, "generated", 1), "{case_name} adapted");
        let base = peft.with_adapters_disabled(|m| m.generate_greedy(ids, Some(mask), 8));
        assert_eq!(base, python_rows(&case, "generated_base", 1), "{case_name} base");
    }
}

/// Switches every module flag (the dropouts' training switch, LoRA's included) off: the
/// fixture's gradients were taken with every dropout at 0.
struct DropoutOff;

impl ModuleMapper for DropoutOff {
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        flag.with_value(false)
    }
}

fn gradients(case_name: &str, model: &str, expected_count: usize) {
    let device = common::device().autodiff();
    let case = Case::load(case_name);
    let base = T5ForConditionalGeneration::from_pretrained(root().join("models").join(model), &device).expect("model");
    let mut peft = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    peft.set_trainable("default", true).expect("trainable");
    let peft = peft.map(&mut DropoutOff);
    let ids = case.ints("input_ids", &device);
    let mask = case.ints("attention_mask", &device);
    let labels: Tensor<2, Int> = case.ints("labels", &device);
    let (_, loss) = peft.model().forward_with_loss(ids, Some(mask), labels);
    assert!(max_abs_diff(loss.clone().into_data(), &case.expected["loss"]) < *TOL, "loss");
    let grads = GradientsParams::from_grads(loss.backward(), &peft);
    let mut compared = 0;
    for (key, grad) in peft.adapter_gradients(&grads, "default").expect("grads") {
        let expected = &case.expected[&format!("grad.base_model.model.{key}")];
        // Unscaled attention and LoRA scale 4 give gradients up to ~13, where float32 rounding
        // alone moves them by ~2e-5 relative (Python's own float32 against float64): compare
        // relative to their size, at 2e-4.
        let values: Vec<f32> = expected.clone().convert::<f32>().try_into_vec().expect("f32");
        let scale = values.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(grad, expected);
        assert!(diff < 2.0 * *TOL * scale, "{key}: max abs diff {diff}, largest gradient {scale}");
        compared += 1;
    }
    assert_eq!(compared, expected_count, "{case_name}");
}

#[test]
fn t5_loss_and_gradients_match_python() {
    // A and B of q and v: 2 encoder blocks x 1 attention + 2 decoder blocks x 2 attentions.
    gradients("t5_qv", "t5", 2 * 2 * (2 + 2 * 2));
}

#[test]
fn mt5_loss_and_gradients_match_python() {
    // A and B of every linear layer but lm_head: encoder 2 x 7, decoder 3 x 11.
    gradients("mt5_all_linear", "mt5", 2 * (2 * 7 + 3 * 11));
}
