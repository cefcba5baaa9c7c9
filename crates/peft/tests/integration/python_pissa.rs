//! PiSSA and OLoRA (`init_lora_weights: "pissa" | "pissa_niter_K" | "olora"`) against the Python
//! library (`fixtures/gen_pissa.py`): loading such adapters onto the original base, starting them
//! here from the same split of the base weight, and converting them to plain LoRA as
//! `save_pretrained(path_initial_model_for_weight_conversion=...)` does.

use crate::common;

use burn::tensor::{Tensor, TensorData};
use common::cases::{assert_close, check_case};
use common::fixtures::{Case, root};
use peft::io::tensors::{read_safetensors, write_safetensors};
use peft::models::gpt2::Gpt2LMHeadModel;
use peft::models::llama::LlamaForCausalLM;
use peft::{AdaLoraConfig, Error, InitLoraWeights, LoraConfig, PeftConfig, PeftModel, get_peft_model};
use std::path::Path;

/// How far from the Python reference outputs may lie on the run's backend (one table:
/// `Backend::tolerance`, per backend and dtype).
static TOL: std::sync::LazyLock<f32> = std::sync::LazyLock::new(|| peft_core::backend::tolerance(burn::tensor::DType::F32));

fn llama() -> LlamaForCausalLM {
    LlamaForCausalLM::from_pretrained(root().join("models/llama"), &common::device()).expect("llama")
}

fn logits(model: &LlamaForCausalLM, case: &Case) -> TensorData {
    let device = common::device();
    model.forward(case.ints("input_ids", &device), Some(case.ints("attention_mask", &device))).into_data()
}

#[test]
fn pissa_adapter_loads_onto_the_original_base_as_in_python() {
    check_case("llama_pissa", llama, |m, ids, mask| m.forward(ids, Some(mask)));
}

#[test]
fn olora_adapter_loads_onto_the_original_base_as_in_python() {
    check_case("llama_olora", llama, |m, ids, mask| m.forward(ids, Some(mask)));
}

#[test]
fn pissa_on_gpt2_conv1d_splits_the_transposed_weight() {
    let load = || Gpt2LMHeadModel::from_pretrained(root().join("models/gpt2"), &common::device()).expect("gpt2");
    check_case("gpt2_pissa", load, |m, ids, mask| m.forward(ids, Some(mask)));
}

/// `s * B A` of every factor pair of a saved adapter folder, by module path (`[d_output, d_input]`).
fn updates(dir: &Path, scaling: f32) -> Vec<(String, Tensor<2>)> {
    let tensors = read_safetensors(&dir.join("adapter_model.safetensors")).expect("adapter tensors");
    let device = common::device();
    let mut out = Vec::new();
    for (key, a) in &tensors {
        let Some(path) = key.strip_suffix(".lora_A.weight") else { continue };
        let b = &tensors[&format!("{path}.lora_B.weight")];
        let a = Tensor::<2>::from_data(a.clone(), &device);
        let b = Tensor::<2>::from_data(b.clone(), &device);
        out.push((path.to_string(), b.matmul(a).mul_scalar(scaling)));
    }
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar()
}

#[test]
fn fresh_pissa_and_olora_start_from_the_split_python_starts_from() {
    for (name, scaling) in [("llama_pissa", 2.0), ("llama_olora", 4.0)] {
        let case = Case::load(name);
        let mut config = PeftConfig::from_dir(case.adapter()).expect("config");
        config.set_inference_mode(false);
        let mut peft = get_peft_model(llama(), config).expect("attaches");
        // The split leaves the output unchanged, and the base keeps the same residual as Python's.
        assert_close(&case, "base", logits(peft.model(), &case), &format!("{name}: fresh adapter"));
        let residual_only = peft.with_adapters_disabled(|m| logits(m, &case));
        assert_close(&case, "disabled", residual_only, &format!("{name}: the residual base"));
        // The factors start at Python's: the same `s B0 A0` (their signs may differ).
        let dir = tempfile::tempdir().expect("temp dir");
        peft.save_pretrained(dir.path()).expect("saves");
        let ours = updates(dir.path(), scaling);
        let theirs = updates(&root().join("cases").join(name).join("initial"), scaling);
        assert_eq!(ours.len(), theirs.len(), "{name}: factor pairs");
        for ((path, mine), (_, python)) in ours.into_iter().zip(theirs) {
            let diff = max_diff(mine, python);
            assert!(diff < *TOL, "{name}: `{path}` starts {diff} away from Python's s B0 A0");
        }
    }
}

#[test]
fn trained_pissa_and_olora_convert_to_plain_lora_for_the_original_base() {
    for name in ["llama_pissa", "llama_olora"] {
        let case = Case::load(name);
        let case_dir = root().join("cases").join(name);
        let peft = PeftModel::from_pretrained(llama(), case.adapter()).expect("loads");
        let dir = tempfile::tempdir().expect("temp dir");
        peft.save_pretrained_as_lora(dir.path(), case_dir.join("initial")).expect("converts");

        let PeftConfig::Lora(ours) = PeftConfig::from_dir(dir.path()).expect("config") else { panic!("LoRA") };
        let PeftConfig::Lora(theirs) = PeftConfig::from_dir(case_dir.join("converted")).expect("config") else { panic!("LoRA") };
        assert_eq!((ours.r, ours.lora_alpha, &ours.init_lora_weights), (theirs.r, theirs.lora_alpha, &InitLoraWeights::Default));

        // Onto an untouched base, the converted adapter gives the trained model's outputs.
        let converted = PeftModel::from_pretrained(llama(), dir.path()).expect("loads the converted adapter");
        assert_close(&case, "converted", logits(converted.model(), &case), &format!("{name}: converted"));
        let theirs = read_safetensors(&case_dir.join("converted/adapter_model.safetensors")).expect("Python's");
        let mine = read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("ours");
        assert_eq!(mine.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "{name}: keys");
        for (key, value) in &theirs {
            let diff = common::fixtures::max_abs_diff(mine[key].clone(), value);
            assert!(diff < 1e-6, "{name}: {key} differs by {diff} from Python's conversion");
        }
    }
}

#[test]
fn conversion_needs_the_adapter_before_training() {
    let case = Case::load("llama_pissa");
    let peft = PeftModel::from_pretrained(llama(), case.adapter()).expect("loads");
    // The OLoRA case's initial adapter targets other modules: not this adapter's start.
    let other = root().join("cases/llama_olora/initial");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("converted");
    let err = peft.save_pretrained_as_lora(&out, &other).expect_err("another adapter's start");
    assert!(matches!(&err, Error::MissingTensor { key, .. } if key.contains("v_proj")), "{err}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn a_failed_pissa_load_leaves_the_base_weights_alone() {
    let case = Case::load("llama_pissa");
    let dir = tempfile::tempdir().expect("temp dir");
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(case.adapter().join(file), dir.path().join(file)).expect("copy");
    }
    let path = dir.path().join("adapter_model.safetensors");
    let mut tensors = read_safetensors(&path).expect("read");
    tensors.insert("base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight".into(), TensorData::new(vec![0f32; 8], [2, 4]));
    write_safetensors(&path, tensors.into_iter().collect()).expect("write");

    let mut peft = PeftModel::new(llama());
    let err = peft.load_adapter(dir.path(), "pissa").expect_err("an extra tensor");
    assert!(matches!(err, Error::UnexpectedTensors { .. }), "{err}");
    let base = logits(&llama(), &case);
    assert_eq!(logits(peft.model(), &case), base, "the base weights are exactly as before");
}

#[test]
fn pissa_refuses_ranks_and_layers_it_cannot_split() {
    let too_wide = LoraConfig::new(64).with_target_modules(["v_proj"]).with_init_lora_weights(InitLoraWeights::Pissa { niter: None });
    let Err(err) = get_peft_model(llama(), too_wide) else { panic!("r above the layer's smaller side") };
    assert!(matches!(&err, Error::InvalidConfig { field: "r", fix, .. } if fix.contains("v_proj")), "{err}");

    let toy_weights = read_safetensors(&root().join("models/toy/model.safetensors")).expect("toy");
    let toy = common::toy::Toy::load(&toy_weights, &common::device());
    let on_conv = LoraConfig::new(2).with_target_modules(["conv2d"]).with_init_lora_weights(InitLoraWeights::Olora);
    let Err(err) = get_peft_model(toy, on_conv) else { panic!("OLoRA on a convolution") };
    assert!(matches!(&err, Error::Unsupported { what, .. } if what.contains("conv2d")), "{err}");

    let adalora = serde_json::json!({"peft_type": "ADALORA", "total_step": 10, "init_lora_weights": "pissa"});
    let config: AdaLoraConfig = serde_json::from_value(adalora).expect("parses");
    assert!(matches!(config.validate(), Err(Error::Unsupported { .. })));
}
