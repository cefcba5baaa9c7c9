//! LoRA on an embedding, 1-D and 2-D convolutions, a linear and a fan-in/fan-out layer, checked
//! against the Python library's outputs, merged outputs and gradients (`fixtures/cases/toy_conv`).

use crate::common;

use common::cases::assert_loss_and_gradients;

use common::fixtures::{Case, max_abs_diff, root};
use common::toy::Toy;
use peft::PeftModel;

/// How far from the Python reference outputs may lie on the run's backend (one table:
/// `Backend::tolerance`, per backend and dtype).
static TOL: std::sync::LazyLock<f32> = std::sync::LazyLock::new(|| peft_core::backend::tolerance(burn::tensor::DType::F32));

fn toy(device: &burn::tensor::Device) -> Toy {
    let weights = peft::io::tensors::read_safetensors(&root().join("models/toy/model.safetensors")).expect("toy weights");
    Toy::load(&weights, device)
}

#[test]
fn toy_outputs_match_python() {
    let device = common::device();
    let case = Case::load("toy_conv");
    let ids = case.ints("input_ids", &device);
    let base = toy(&device);
    assert!(max_abs_diff(base.forward(ids.clone()).into_data(), &case.expected["base"]) < *TOL, "base model");

    let mut model = PeftModel::from_pretrained(base, case.adapter()).expect("loads the Python adapter");
    let adapted = model.model().forward(ids.clone()).into_data();
    assert!(max_abs_diff(adapted, &case.expected["adapted"]) < *TOL, "adapted");
    let disabled = model.with_adapters_disabled(|m| m.forward(ids.clone())).into_data();
    assert!(max_abs_diff(disabled, &case.expected["base"]) < *TOL, "disabled");
    let merged = model.merge_and_unload().expect("merges");
    assert!(max_abs_diff(merged.forward(ids).into_data(), &case.expected["merged"]) < *TOL, "merged");
}

#[test]
fn toy_gradients_match_python() {
    let device = common::device().autodiff();
    let case = Case::load("toy_conv");
    let ids = case.ints("input_ids", &device);
    let mut model = PeftModel::from_pretrained(toy(&device), case.adapter()).expect("loads");
    // A loaded adapter starts frozen, as in Python; train it as the fixture did.
    model.set_trainable("default", true).expect("default");
    let loss = model.model().forward(ids).powi_scalar(2).mean();
    let compared = assert_loss_and_gradients(&case, &model, loss);
    assert_eq!(compared, 10, "A and B at five sites");
}
