//! GPT-2 and BLOOM with LoRA adapters written by the Python library (`fixtures/cases/gpt2_*`,
//! `bloom_*`, made by `fixtures/gen_gpt2.py`).

use crate::common;

use burn::tensor::Tensor;
use common::cases::{assert_loss_and_gradients, check_case};
use common::fixtures::{Case, max_abs_diff, root};
use peft::PeftModel;
use peft::models::bloom::{BloomForCausalLM, BloomForTokenClassification};
use peft::models::gpt2::{Gpt2ForSequenceClassification, Gpt2LMHeadModel};
use std::path::PathBuf;

fn model(name: &str) -> PathBuf {
    root().join("models").join(name)
}

#[test]
fn gpt2_conv1d_fan_in_fan_out() {
    let load = || Gpt2LMHeadModel::from_pretrained(model("gpt2"), &common::device()).expect("gpt2");
    check_case("gpt2_lora", load, |m, ids, mask| m.forward(ids, Some(mask)));
}

#[test]
fn gpt2_sequence_classification_with_score_saved() {
    let load = || Gpt2ForSequenceClassification::from_pretrained(model("gpt2_seq_cls"), &common::device()).expect("gpt2");
    check_case("gpt2_seq_cls", load, |m, ids, mask| m.forward(ids, Some(mask)));
}

#[test]
fn bloom_fused_qkv_bias_lora_only() {
    let load = || BloomForCausalLM::from_pretrained(model("bloom"), &common::device()).expect("bloom");
    check_case("bloom_lora_only", load, |m, ids, mask| m.forward(ids, Some(mask)));
}

#[test]
fn bloom_token_classification() {
    let load = || BloomForTokenClassification::from_pretrained(model("bloom_token_cls"), &common::device()).expect("bloom");
    check_case("bloom_token_cls", load, |m, ids, mask| m.forward(ids, Some(mask)));
}

/// Loads `case`'s adapter on `base` as trainable; `loss` computes the case's loss from its inputs.
fn gradients<M: peft::AdapterSites>(case: &str, base: M, loss: impl Fn(&M, &Case) -> Tensor<1>) -> usize {
    let case = Case::load(case);
    let mut model = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let loss = loss(model.model(), &case);
    assert_loss_and_gradients(&case, &model, loss)
}

#[test]
fn gpt2_causal_lm_gradients_match_python() {
    let device = common::device().autodiff();
    let base = Gpt2LMHeadModel::from_pretrained(model("gpt2"), &device).expect("gpt2");
    let compared = gradients("gpt2_lora", base, |m, case| {
        let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
        // Labels are the inputs, ignored (-100) on padding, as the fixture computed them.
        let labels = ids.clone().mask_fill(mask.clone().equal_elem(0), -100);
        m.forward_with_loss(ids, Some(mask), labels).1
    });
    assert_eq!(compared, 12, "A and B of c_attn, attn.c_proj and mlp.c_proj in two layers");
}

#[test]
fn gpt2_sequence_classification_gradients_match_python() {
    let device = common::device().autodiff();
    let base = Gpt2ForSequenceClassification::from_pretrained(model("gpt2_seq_cls"), &device).expect("gpt2");
    let compared = gradients("gpt2_seq_cls", base, |m, case| {
        let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
        let labels = Tensor::from_ints([0, 2], &device);
        m.forward_with_loss(ids, Some(mask), labels).1
    });
    assert_eq!(compared, 3, "A and B of c_attn in one layer, and the saved score");
}

#[test]
fn bloom_gradients_match_python() {
    let device = common::device().autodiff();
    let case = Case::load("bloom_lora_only");
    let base = BloomForCausalLM::from_pretrained(model("bloom"), &device).expect("bloom");
    let mut peft = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    peft.set_trainable("default", true).expect("trainable");
    let loss = || {
        let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
        let labels = ids.clone().mask_fill(mask.clone().equal_elem(0), -100);
        peft.model().forward_with_loss(ids, Some(mask), labels).1
    };
    assert_eq!(assert_loss_and_gradients(&case, &peft, loss()), 4, "A and B of query_key_value in two layers");
    // bias="lora_only" also trains query_key_value's bias, which is a base parameter.
    let grads = loss().backward();
    for (i, block) in peft.model().transformer.h.iter().enumerate() {
        let bias = block.self_attention.query_key_value.base_layer.bias.as_ref().expect("a bias");
        let grad = bias.grad(&grads).expect("the bias is trained");
        let key = format!("grad.base_model.model.transformer.h.{i}.self_attention.query_key_value.base_layer.bias");
        assert!(max_abs_diff(grad.into_data(), &case.expected[&key]) < *common::cases::TOL, "{key}");
    }

    let base = BloomForTokenClassification::from_pretrained(model("bloom_token_cls"), &device).expect("bloom");
    let compared = gradients("bloom_token_cls", base, |m, case| {
        let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
        // Labels ids % 3, ignored on padding, as the fixture computed them.
        let labels = ids.clone().remainder_scalar(3).mask_fill(mask.clone().equal_elem(0), -100);
        m.forward_with_loss(ids, Some(mask), labels).1
    });
    assert_eq!(compared, 6, "A and B of query_key_value and dense, the classifier's weight and bias");
}
