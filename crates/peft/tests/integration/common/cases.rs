//! Runs one Python fixture case against a model: outputs, merge, counts, targets, file round trip.

use burn::tensor::{Int, Tensor, TensorData};
use peft::{AdapterSites, PeftConfig, PeftModel, get_peft_model};

use super::fixtures::{Case, max_abs_diff};

/// Tolerance on outputs against the Python reference.
/// How far from the Python reference outputs may lie on the run's backend (one table:
/// `Backend::tolerance`, per backend and dtype).
pub static TOL: std::sync::LazyLock<f32> = std::sync::LazyLock::new(|| peft_core::backend::tolerance(burn::tensor::DType::F32));

/// Zeroes the positions a `[batch, tokens]` mask marks as padding in a `[batch, tokens, ..]` output,
/// so outputs are compared on real tokens only.
pub fn masked(data: TensorData, mask: Option<&TensorData>) -> TensorData {
    let Some(mask) = mask else { return data };
    let shape = data.shape().to_vec();
    if shape.len() < 3 {
        return data;
    }
    let per_token: usize = shape[2..].iter().product();
    let m: Vec<i64> = mask.clone().convert::<i64>().try_into_vec().expect("mask");
    let mut v: Vec<f32> = data.convert::<f32>().try_into_vec().expect("f32");
    for (i, keep) in m.iter().enumerate() {
        if *keep == 0 {
            v[i * per_token..(i + 1) * per_token].fill(0.0);
        }
    }
    TensorData::new(v, shape)
}

/// Asserts an output equals the case's tensor `key` on real tokens.
pub fn assert_close(case: &Case, key: &str, actual: TensorData, what: &str) {
    let mask = case.expected.get("attention_mask");
    let diff = max_abs_diff(masked(actual, mask), &masked(case.expected[key].clone(), mask));
    assert!(diff < *TOL, "{what}: max abs diff {diff} against `{key}`");
}

/// Runs every check of a single-adapter case. `load` builds the fresh base model, `forward`
/// runs it on the case's inputs.
pub fn check_case<M, F, const D: usize>(name: &str, load: impl Fn() -> M, forward: F)
where
    M: AdapterSites,
    F: Fn(&M, Tensor<2, Int>, Tensor<2, Int>) -> Tensor<D>,
{
    let case = Case::load(name);
    let device = super::device();
    let ids = case.ints("input_ids", &device);
    let mask = if case.has("attention_mask") { case.ints("attention_mask", &device) } else { ids.ones_like() };
    check_outputs(&case, load, |m: &M| forward(m, ids.clone(), mask.clone()).into_data());
}

/// [`check_case`] for image models: the case's `pixel_values` (`[batch, channels, height, width]`)
/// are the input.
pub fn check_pixel_case<M, F, const D: usize>(name: &str, load: impl Fn() -> M, forward: F)
where
    M: AdapterSites,
    F: Fn(&M, Tensor<4>) -> Tensor<D>,
{
    let case = Case::load(name);
    let pixels: Tensor<4> = case.floats("pixel_values", &super::device());
    check_outputs(&case, load, |m: &M| forward(m, pixels.clone()).into_data());
}

/// The checks of [`check_case`], given how to run a model on the case's inputs.
fn check_outputs<M: AdapterSites>(case: &Case, load: impl Fn() -> M, run: impl Fn(&M) -> TensorData) {
    assert_close(case, "base", run(&load()), "base model");
    let mut peft = PeftModel::from_pretrained(load(), case.adapter()).expect("loads the Python adapter");
    assert_close(case, "adapted", run(peft.model()), "with the adapter");
    let off = if case.has("disabled") { "disabled" } else { "base" };
    let disabled = peft.with_adapters_disabled(|m| run(m));
    assert_close(case, off, disabled, "adapters disabled");

    let meta = &case.meta;
    let strings = |k: &str| -> Vec<String> {
        meta[k].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let mut targeted = peft.targeted_modules("default").expect("default");
    targeted.sort();
    let mut expected_targets = strings("targeted_modules");
    expected_targets.extend(strings("modules_to_save"));
    expected_targets.sort();
    assert_eq!(targeted, expected_targets, "targeted modules");

    peft.set_trainable("default", true).expect("trainable");
    assert_eq!(peft.trainable_parameters_line(), meta["print_trainable_parameters"].as_str().expect("line"));

    // Saving again writes the same keys and values as the Python library.
    let dir = tempfile::tempdir().expect("temp dir");
    peft.save_pretrained(dir.path()).expect("saves");
    let ours = peft::io::tensors::read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("ours");
    let theirs = peft::io::tensors::read_safetensors(&case.adapter().join("adapter_model.safetensors")).expect("theirs");
    for (key, value) in &theirs {
        if key.ends_with("embed_tokens.base_layer.weight") {
            continue; // the whole base table, which the Python library adds to embedding adapters
        }
        let mine = ours.get(key).unwrap_or_else(|| panic!("saved file lacks {key}"));
        assert_eq!(max_abs_diff(mine.clone(), value), 0.0, "{key} round trips");
    }
    assert!(ours.keys().all(|k| theirs.contains_key(k)), "no extra keys: {:?}", ours.keys().collect::<Vec<_>>());

    // The same config attached from scratch targets the same modules.
    let mut config = PeftConfig::from_dir(case.adapter()).expect("config");
    config.set_inference_mode(false);
    let fresh = get_peft_model(load(), config).expect("attaches");
    let mut fresh_targets = fresh.targeted_modules("default").expect("default");
    fresh_targets.sort();
    assert_eq!(fresh_targets, expected_targets, "get_peft_model targets");

    let merged = peft.merge_and_unload().expect("merges");
    assert_close(case, "merged", run(&merged), "merged");
}

/// Asserts the loss and the gradient of every parameter of adapter `default` equal the case's
/// `loss` and `grad.<file key>` tensors; returns how many gradients were compared.
pub fn assert_loss_and_gradients<M: AdapterSites>(case: &Case, model: &PeftModel<M>, loss: Tensor<1>) -> usize {
    assert!(max_abs_diff(loss.clone().into_data(), &case.expected["loss"]) < *TOL, "loss");
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), model);
    let mut compared = 0;
    for (key, grad) in model.adapter_gradients(&grads, "default").expect("grads") {
        let expected = &case.expected[&format!("grad.base_model.model.{key}")];
        assert!(max_abs_diff(grad, expected) < *TOL, "{key}");
        compared += 1;
    }
    compared
}
