//! DoRA (`use_dora: true`) adapters written by the Python library (`fixtures/gen_lora_dora.py`):
//! outputs, merged outputs, gradients (the magnitudes' included) and saved files equal Python's,
//! on linear, embedding, GPT-2 Conv1D and convolution layers; and DoRA trained from scratch here.

use crate::common;

use burn::optim::{AdamConfig, GradientsParams};
use common::cases::{assert_loss_and_gradients, check_case};
use common::fixtures::{Case, max_abs_diff, root};
use common::max_diff;
use common::toy::Toy;
use peft::models::gpt2::Gpt2LMHeadModel;
use peft::models::llama::LlamaForCausalLM;
use peft::{LoraConfig, PeftModel, get_peft_model};

/// How far from the Python reference outputs may lie on the run's backend (one table:
/// `Backend::tolerance`, per backend and dtype).
static TOL: std::sync::LazyLock<f32> = std::sync::LazyLock::new(|| peft_core::backend::tolerance(burn::tensor::DType::F32));

fn llama(device: &burn::tensor::Device) -> LlamaForCausalLM {
    LlamaForCausalLM::from_pretrained(root().join("models/llama"), device).expect("llama")
}

fn toy(device: &burn::tensor::Device) -> Toy {
    let weights = peft::io::tensors::read_safetensors(&root().join("models/toy/model.safetensors")).expect("toy weights");
    Toy::load(&weights, device)
}

#[test]
fn llama_dora_on_linear_and_embedding_matches_python() {
    check_case("llama_dora", || llama(&common::device()), |m, ids, mask| m.forward(ids, Some(mask)));
}

#[test]
fn gpt2_dora_with_fan_in_fan_out_matches_python() {
    let load = || Gpt2LMHeadModel::from_pretrained(root().join("models/gpt2"), &common::device()).expect("gpt2");
    check_case("gpt2_dora", load, |m, ids, mask| m.forward(ids, Some(mask)));
}

#[test]
fn llama_dora_gradients_match_python() {
    let device = common::device().autodiff();
    let case = Case::load("llama_dora");
    let mut model = PeftModel::from_pretrained(llama(&device), case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let ids = case.ints("input_ids", &device);
    let mask = case.ints("attention_mask", &device);
    let labels = ids.clone().mask_fill(mask.clone().equal_elem(0), -100);
    let (_, loss) = model.model().forward_with_loss(ids, Some(mask), labels);
    let compared = assert_loss_and_gradients(&case, &model, loss);
    assert_eq!(compared, 15, "A, B and magnitude of q_proj and v_proj in two layers, and of embed_tokens");
}

#[test]
fn toy_dora_on_convolutions_matches_python() {
    let device = common::device();
    let case = Case::load("toy_dora");
    let ids = case.ints("input_ids", &device);
    let mut model = PeftModel::from_pretrained(toy(&device), case.adapter()).expect("loads the Python adapter");
    let adapted = model.model().forward(ids.clone()).into_data();
    assert!(max_abs_diff(adapted, &case.expected["adapted"]) < *TOL, "adapted");
    let disabled = model.with_adapters_disabled(|m| m.forward(ids.clone())).into_data();
    assert!(max_abs_diff(disabled, &case.expected["base"]) < *TOL, "disabled");

    // Merge then unmerge restores the base layers; merging again equals Python's merged model.
    model.merge_adapter().expect("merges");
    assert!(max_abs_diff(model.model().forward(ids.clone()).into_data(), &case.expected["merged"]) < *TOL, "merged");
    model.unmerge_adapters().expect("unmerges");
    assert!(max_abs_diff(model.model().forward(ids.clone()).into_data(), &case.expected["adapted"]) < *TOL, "unmerged");
    let merged = model.merge_and_unload().expect("merges");
    assert!(max_abs_diff(merged.forward(ids).into_data(), &case.expected["merged"]) < *TOL, "merged and unloaded");
}

#[test]
fn toy_dora_gradients_match_python() {
    let device = common::device().autodiff();
    let case = Case::load("toy_dora");
    let ids = case.ints("input_ids", &device);
    let mut model = PeftModel::from_pretrained(toy(&device), case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let loss = model.model().forward(ids).powi_scalar(2).mean();
    let compared = assert_loss_and_gradients(&case, &model, loss);
    assert_eq!(compared, 15, "A, B and magnitude at five sites");
}

/// A fresh DoRA adapter computes the base model (B = 0 and m = ||W0||), trains its magnitudes
/// along with A and B, and round-trips through its files.
#[test]
fn fresh_dora_starts_at_the_base_trains_and_round_trips() {
    let device = common::device().autodiff();
    let case = Case::load("llama_dora");
    let ids = case.ints("input_ids", &device);
    let mask = case.ints("attention_mask", &device);
    let base_logits = llama(&device).forward(ids.clone(), Some(mask.clone()));
    let config = LoraConfig::new(4).with_target_modules(["q_proj", "v_proj"]).with_use_dora(true);
    let mut model = get_peft_model(llama(&device), config).expect("attaches DoRA");
    let start = model.model().forward(ids.clone(), Some(mask.clone()));
    assert!(max_diff(start, base_logits.clone()) < 1e-5, "DoRA starts at the base model");

    let mut optim = AdamConfig::new().init();
    let labels = ids.clone().mask_fill(mask.clone().equal_elem(0), -100);
    for _ in 0..3 {
        let (_, loss) = model.model().forward_with_loss(ids.clone(), Some(mask.clone()), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let trained = model.model().forward(ids.clone(), Some(mask.clone()));
    assert!(max_diff(trained.clone(), base_logits) > 1e-3, "training moved the outputs");

    let dir = tempfile::tempdir().expect("temp dir");
    model.save_pretrained(dir.path()).expect("saves");
    let saved = peft::io::tensors::read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("reads");
    let magnitudes = saved.keys().filter(|k| k.ends_with(".lora_magnitude_vector")).count();
    assert_eq!(magnitudes, 4, "one magnitude per adapted layer: {:?}", saved.keys().collect::<Vec<_>>());
    let back = PeftModel::from_pretrained(llama(&device), dir.path()).expect("loads back");
    let reloaded = back.model().forward(ids, Some(mask));
    assert!(max_diff(reloaded, trained) < 1e-5, "save -> load gives the same outputs");
}

/// A config with `use_dora` over a plain LoRA file is a typed error naming the missing tensor.
#[test]
fn a_plain_lora_file_under_a_dora_config_is_refused() {
    let device = common::device();
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(Case::load("llama_qv").adapter()).expect("adapter") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copies");
    }
    let path = dir.path().join("adapter_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
    config["use_dora"] = serde_json::Value::Bool(true);
    std::fs::write(&path, config.to_string()).expect("writes");
    let Err(e) = PeftModel::from_pretrained(llama(&device), dir.path()) else { panic!("the file has no magnitudes") };
    let message = e.to_string();
    assert!(message.contains("lora_magnitude_vector"), "{message}");
    assert!(message.contains("use_dora"), "{message}");
}
