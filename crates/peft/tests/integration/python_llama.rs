//! The Llama family with LoRA adapters written by the Python library (`fixtures/cases/*`).

use crate::common;

use burn::tensor::{Int, Tensor};
use common::cases::{assert_close, assert_loss_and_gradients, check_case};
use common::fixtures::{Case, root};
use peft::models::llama::LlamaForCausalLM;
use peft::{BASE_ONLY, Combination, PeftModel};

fn llama(name: &str) -> LlamaForCausalLM {
    LlamaForCausalLM::from_pretrained(root().join("models").join(name), &common::device()).expect("model loads")
}

fn check(case: &str, model: &str) {
    check_case(case, || llama(model), |m, ids, mask| m.forward(ids, Some(mask)));
}

#[test]
fn llama_q_v() {
    check("llama_qv", "llama");
}

#[test]
fn llama_all_linear_with_rslora_and_patterns() {
    check("llama_all_linear_rslora", "llama");
}

#[test]
fn llama_layers_to_transform() {
    check("llama_layers", "llama");
}

#[test]
fn llama_exclude_modules() {
    check("llama_exclude", "llama");
}

#[test]
fn llama_embedding_lora() {
    check("llama_embedding", "llama");
}

#[test]
fn smollm_tied_embeddings() {
    check("smollm_qv", "smollm");
}

#[test]
fn llama3_rope_scaling() {
    check("llama_rope_scaled_qv", "llama_rope_scaled");
}

#[test]
fn mistral() {
    check("mistral_qv", "mistral");
}

#[test]
fn qwen2_bias_all() {
    check("qwen2_bias_all", "qwen2");
}

#[test]
fn qwen2_bias_lora_only() {
    check("qwen2_bias_lora_only", "qwen2");
}

fn inputs(case: &Case) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let device = common::device();
    (case.ints("input_ids", &device), case.ints("attention_mask", &device))
}

#[test]
fn two_adapters_switching_and_mixed_batches() {
    let case = Case::load("llama_multi");
    let (ids, mask) = inputs(&case);
    let run = |m: &LlamaForCausalLM| m.forward(ids.clone(), Some(mask.clone())).into_data();
    let mut peft = PeftModel::from_pretrained(llama("llama"), case.adapter()).expect("default");
    peft.load_adapter(case.adapter().join("other"), "other").expect("other");
    assert_close(&case, "adapted", run(peft.model()), "default active");
    peft.set_adapter("other").expect("other");
    assert_close(&case, "adapted_other", run(peft.model()), "other active");
    let mixed = peft.with_batch_adapters(&["other", BASE_ONLY], |m| run(m)).expect("mixed");
    assert_close(&case, "mixed", mixed, "mixed batch");
    peft.set_adapter("default").expect("default");
    let merged = peft.clone().merge_and_unload().expect("merges");
    assert_close(&case, "merged", run(&merged), "default merged");
}

#[test]
fn weighted_combinations_match_python() {
    let case = Case::load("llama_weighted");
    let (ids, mask) = inputs(&case);
    let run = |m: &LlamaForCausalLM| m.forward(ids.clone(), Some(mask.clone())).into_data();
    let mut peft = PeftModel::from_pretrained(llama("llama"), case.adapter().join("a")).expect("a");
    peft.load_adapter(case.adapter().join("b"), "b").expect("b");
    // `from_pretrained` names the first adapter `default`; the Python case calls it `a`.
    let a = "default";
    assert_close(&case, "adapted", run(peft.model()), "a");
    peft.set_adapter("b").expect("b");
    assert_close(&case, "adapted_b", run(peft.model()), "b");
    for (name, how) in [("lin", Combination::Linear), ("cat", Combination::Cat), ("svd", Combination::Svd { rank: 4 })] {
        if !case.has(name) {
            continue;
        }
        peft.add_weighted_adapter(&[(a, 0.7), ("b", 0.3)], name, how).expect("combines");
        peft.set_adapter(name).expect("activate");
        assert_close(&case, name, run(peft.model()), name);
    }
}

#[test]
fn llama_gradients_match_python() {
    let device = common::device().autodiff();
    let case = Case::load("llama_qv");
    let base = LlamaForCausalLM::from_pretrained(root().join("models/llama"), &device).expect("llama");
    let mut model = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let ids = case.ints("input_ids", &device);
    let mask = case.ints("attention_mask", &device);
    // Labels are the inputs, ignored (-100) on padding, as the fixture computed them.
    let labels = ids.clone().mask_fill(mask.clone().equal_elem(0), -100);
    let (_, loss) = model.model().forward_with_loss(ids, Some(mask), labels);
    let compared = assert_loss_and_gradients(&case, &model, loss);
    assert_eq!(compared, 8, "A and B of q_proj and v_proj in two layers");
}
