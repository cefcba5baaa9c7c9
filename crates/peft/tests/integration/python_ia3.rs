//! (IA)³ adapters written by the Python library (`fixtures/cases/ia3_*`, made by
//! `fixtures/gen_ia3.py`): outputs (adapted, disabled, merged), counts and the printed line, saved
//! files, loss and gradients, several adapters, weighted combination, default targets.

use crate::common;

use burn::module::{Flag, Module, ModuleMapper, Param};
use burn::tensor::{Int, Tensor, TensorData};
use common::cases::{TOL, assert_close, assert_loss_and_gradients, check_case, masked};
use common::fixtures::{Case, max_abs_diff, root};
use common::toy::Toy;
use peft::core::SiteMut;
use peft::models::bert::BertForSequenceClassification;
use peft::models::gpt2::Gpt2LMHeadModel;
use peft::models::llama::LlamaForCausalLM;
use peft::models::t5::T5ForConditionalGeneration;
use peft::{AdapterSites, BASE_ONLY, Combination, Error, Ia3Config, PeftConfig, PeftModel, TaskType, get_peft_model};

fn model_dir(name: &str) -> std::path::PathBuf {
    root().join("models").join(name)
}

fn llama() -> LlamaForCausalLM {
    LlamaForCausalLM::from_pretrained(model_dir("llama"), &common::device()).expect("llama")
}

fn t5() -> T5ForConditionalGeneration {
    T5ForConditionalGeneration::from_pretrained(model_dir("t5"), &common::device()).expect("t5")
}

fn toy(device: &burn::tensor::Device) -> Toy {
    let weights = peft::io::tensors::read_safetensors(&model_dir("toy").join("model.safetensors")).expect("toy weights");
    Toy::load(&weights, device)
}

/// Every module flag (dropout's training switch) off: the fixtures' gradients had dropout 0.
struct DropoutOff;

impl ModuleMapper for DropoutOff {
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        flag.with_value(false)
    }
}

fn causal_labels(ids: &Tensor<2, Int>, mask: &Tensor<2, Int>) -> Tensor<2, Int> {
    ids.clone().mask_fill(mask.clone().equal_elem(0), -100)
}

#[test]
fn llama_default_targets_match_python() {
    check_case("ia3_llama", llama, |m, ids, mask| m.forward(ids, Some(mask)));
}

#[test]
fn t5_default_targets_match_python() {
    let decoder_ids = Case::load("ia3_t5").ints("decoder_input_ids", &common::device());
    check_case("ia3_t5", t5, |m, ids, mask| m.forward(ids, Some(mask), decoder_ids.clone()));
}

#[test]
fn gpt2_conv1d_fan_in_fan_out_matches_python() {
    let load = || Gpt2LMHeadModel::from_pretrained(model_dir("gpt2"), &common::device()).expect("gpt2");
    check_case("ia3_gpt2", load, |m, ids, mask| m.forward(ids, Some(mask)));
}

#[test]
fn bert_sequence_classification_with_classifier_copy_matches_python() {
    let load = || BertForSequenceClassification::from_pretrained(model_dir("bert"), &common::device()).expect("bert");
    check_case("ia3_bert_seq_cls", load, |m, ids, mask| m.forward(ids, Some(mask), None));
}

/// The test: on T5 with the default targets, only the vectors train, one per output
/// feature of every `k` and `v` and one per input feature of every `wo`; the line is Python's.
#[test]
fn t5_trains_the_out_widths_of_k_and_v_and_the_in_width_of_wo() {
    let case = Case::load("ia3_t5");
    let base = t5();
    let mut expected = 0;
    base.visit_sites(&mut |path, site| {
        if let SiteMut::Linear(s) = site {
            let [d_in, d_out] = s.dims();
            if path.ends_with(".k") || path.ends_with(".v") {
                expected += d_out;
            } else if path.ends_with(".wo") {
                expected += d_in;
            }
        }
    });
    let model = get_peft_model(base, Ia3Config::default().with_task_type(TaskType::Seq2SeqLm)).expect("attaches with the defaults");
    let (trainable, all) = model.trainable_parameters();
    assert_eq!(trainable, expected);
    assert_eq!(trainable as u64, case.meta["trainable_params"].as_u64().expect("count"));
    assert_eq!(all as u64, case.meta["all_params"].as_u64().expect("count"));
    assert_eq!(model.trainable_parameters_line(), case.meta["print_trainable_parameters"].as_str().expect("line"));
    let PeftConfig::Ia3(config) = model.peft_config("default").expect("default") else { panic!("an IA3 config") };
    assert_eq!(config.target_modules.names(), ["k", "v", "wo"], "Python's defaults for t5");
    assert_eq!(config.feedforward_modules.names(), ["wo"]);
}

#[test]
fn loss_and_gradients_match_python() {
    let device = common::device().autodiff();

    let case = Case::load("ia3_llama");
    let mut model = PeftModel::from_pretrained(LlamaForCausalLM::from_pretrained(model_dir("llama"), &device).expect("llama"), case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
    let (_, loss) = model.model().forward_with_loss(ids.clone(), Some(mask.clone()), causal_labels(&ids, &mask));
    assert_eq!(assert_loss_and_gradients(&case, &model, loss), 6, "k_proj, v_proj, down_proj in two layers");

    let case = Case::load("ia3_gpt2");
    let mut model = PeftModel::from_pretrained(Gpt2LMHeadModel::from_pretrained(model_dir("gpt2"), &device).expect("gpt2"), case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
    let (_, loss) = model.model().forward_with_loss(ids.clone(), Some(mask.clone()), causal_labels(&ids, &mask));
    assert_eq!(assert_loss_and_gradients(&case, &model, loss), 4, "c_attn and mlp.c_proj in two layers");

    let case = Case::load("ia3_t5");
    let base = T5ForConditionalGeneration::from_pretrained(model_dir("t5"), &device).expect("t5");
    let mut model = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let model = model.map(&mut DropoutOff);
    let (ids, mask, labels) = (case.ints("input_ids", &device), case.ints("attention_mask", &device), case.ints("labels", &device));
    let (_, loss) = model.model().forward_with_loss(ids, Some(mask), labels);
    assert_eq!(assert_loss_and_gradients(&case, &model, loss), 2 * 3 + 2 * 5, "k, v, wo per encoder block; k, v twice and wo per decoder block");

    let case = Case::load("ia3_bert_seq_cls");
    let base = BertForSequenceClassification::from_pretrained(model_dir("bert"), &device).expect("bert").map(&mut DropoutOff);
    let mut model = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
    let (_, loss) = model.model().forward_with_loss(ids, Some(mask), None, labels);
    assert_eq!(assert_loss_and_gradients(&case, &model, loss), 2 * 4 + 2, "4 vectors per layer and the classifier copy");
}

#[test]
fn toy_conv2d_linear_and_conv1d_layers_match_python() {
    let device = common::device();
    let case = Case::load("ia3_toy");
    let ids = case.ints("input_ids", &device);
    let run = |m: &Toy| m.forward(ids.clone()).into_data();
    let mut model = PeftModel::from_pretrained(toy(&device), case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    assert_eq!(model.trainable_parameters_line(), case.meta["print_trainable_parameters"].as_str().expect("line"));
    model.load_adapter(case.adapter().join("ff"), "ff").expect("ff");
    assert!(max_abs_diff(run(model.model()), &case.expected["adapted"]) < *TOL, "adapted");
    assert!(max_abs_diff(model.with_adapters_disabled(|m| run(m)), &case.expected["base"]) < *TOL, "disabled");
    model.set_adapter("ff").expect("ff");
    assert!(max_abs_diff(run(model.model()), &case.expected["adapted_ff"]) < *TOL, "conv2d and lin feed-forward");
    let merged_ff = model.clone().merge_and_unload().expect("merges");
    assert!(max_abs_diff(run(&merged_ff), &case.expected["merged_ff"]) < *TOL, "ff merged");
    model.set_adapter("default").expect("default");
    let merged = model.merge_and_unload().expect("merges");
    assert!(max_abs_diff(run(&merged), &case.expected["merged"]) < *TOL, "merged");

    let device = device.autodiff();
    let mut model = PeftModel::from_pretrained(toy(&device), case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let loss = model.model().forward(case.ints("input_ids", &device)).powi_scalar(2).mean();
    assert_eq!(assert_loss_and_gradients(&case, &model, loss), 3);
}

#[test]
fn a_1d_convolution_is_refused_as_in_python() {
    let device = common::device();
    let config = Ia3Config::new(["conv1d"]).with_feedforward_modules(Vec::<String>::new());
    let Err(e) = get_peft_model(toy(&device), config) else { panic!("IA3 has no Conv1d layer") };
    assert!(matches!(&e, Error::Unsupported { what, .. } if what.contains("conv1d")), "{e:?}");
    let python = Case::load("ia3_toy").meta["errors"]["conv1d"].as_str().expect("recorded").to_string();
    assert!(python.contains("is not supported"), "{python}");
}

#[test]
fn several_adapters_combinations_and_mixed_batches() {
    let case = Case::load("ia3_llama");
    let device = common::device();
    let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
    let run = |m: &LlamaForCausalLM| m.forward(ids.clone(), Some(mask.clone())).into_data();
    let mut peft = PeftModel::from_pretrained(llama(), case.adapter()).expect("default");
    peft.load_adapter(case.adapter().join("other"), "other").expect("other");
    assert_close(&case, "adapted", run(peft.model()), "default");
    peft.set_adapter("other").expect("other");
    assert_close(&case, "adapted_other", run(peft.model()), "other");
    peft.set_adapters(&["default", "other"]).expect("both");
    assert_close(&case, "adapted_both", run(peft.model()), "both active: the vectors multiply");

    // Python ignores `adapter_names=` for IA3; here each row gets its own adapter.
    let mixed = peft.with_batch_adapters(&["other", BASE_ONLY], |m| m.forward(ids.clone(), Some(mask.clone()))).expect("mixed");
    let expected = Tensor::cat(
        vec![
            Tensor::<3>::from_data(case.expected["adapted_other"].clone(), &device).narrow(0, 0, 1),
            Tensor::<3>::from_data(case.expected["base"].clone(), &device).narrow(0, 1, 1),
        ],
        0,
    );
    let on_tokens = |t: Tensor<3>| masked(t.into_data(), case.expected.get("attention_mask"));
    assert!(max_abs_diff(on_tokens(mixed), &on_tokens(expected)) < *TOL, "row 0: other, row 1: the base model");

    peft.add_weighted_adapter(&[("default", 0.7), ("other", 0.3)], "combo", Combination::Linear).expect("combines");
    peft.set_adapter("combo").expect("combo");
    assert_close(&case, "combo", run(peft.model()), "weighted combination");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut only_combo = peft.clone();
    for name in ["default", "other"] {
        only_combo.delete_adapter(name).expect("deletes");
    }
    only_combo.save_pretrained(dir.path()).expect("saves");
    // Adapters other than `default` go to a subfolder named after them, as in Python.
    let saved = peft::io::tensors::read_safetensors(&dir.path().join("combo/adapter_model.safetensors")).expect("saved");
    let mut compared = 0;
    for (key, value) in &case.expected {
        if let Some(file_key) = key.strip_prefix("weights.combo.") {
            let ours = saved.get(file_key).unwrap_or_else(|| panic!("combination lacks {file_key}"));
            assert!(max_abs_diff(ours.clone(), value) < 1e-6, "{file_key}");
            compared += 1;
        }
    }
    assert_eq!(compared, saved.len(), "the same vectors as Python's, no more");
    let PeftConfig::Ia3(combo) = peft.peft_config("combo").expect("combo") else { panic!("IA3") };
    let python = &case.meta["other_adapters"]["combo"];
    let names = |k: &str| -> Vec<String> { python[k].as_array().expect(k).iter().map(|v| v.as_str().expect("name").to_string()).collect() };
    assert_eq!(combo.target_modules.names(), names("target_modules"));
    assert_eq!(combo.feedforward_modules.names(), names("feedforward_modules"));
    let err = peft.add_weighted_adapter(&[("default", 1.0)], "cat", Combination::Cat).expect_err("IA3 sums only");
    assert!(matches!(err, Error::InvalidConfig { field: "combination_type", .. }), "{err:?}");
}

#[test]
fn merge_then_unmerge_restores_the_adapted_model() {
    let case = Case::load("ia3_gpt2");
    let device = common::device();
    let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
    let run = |m: &Gpt2LMHeadModel| m.forward(ids.clone(), Some(mask.clone())).into_data();
    let load = || Gpt2LMHeadModel::from_pretrained(model_dir("gpt2"), &device).expect("gpt2");
    let mut peft = PeftModel::from_pretrained(load(), case.adapter()).expect("loads");
    peft.merge_adapter().expect("merges");
    assert_close(&case, "merged", run(peft.model()), "merged in place");
    peft.unmerge_adapters().expect("unmerges");
    assert_close(&case, "adapted", run(peft.model()), "unmerged, the adapter active again");
    let base = peft.with_adapters_disabled(|m| run(m));
    assert_close(&case, "base", base, "unmerged weights are the base's again (to 1e-8 of the vector)");

    // Save -> load: same keys and shapes as Python's file, same outputs.
    let dir = tempfile::tempdir().expect("temp dir");
    peft.save_pretrained(dir.path()).expect("saves");
    let ours = peft::io::tensors::read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("ours");
    let theirs = peft::io::tensors::read_safetensors(&case.adapter().join("adapter_model.safetensors")).expect("theirs");
    let shapes = |m: &peft::io::tensors::TensorMap| m.iter().map(|(k, v)| (k.clone(), v.shape().to_vec())).collect::<std::collections::BTreeMap<_, _>>();
    assert_eq!(shapes(&ours), shapes(&theirs));
    let reloaded = PeftModel::from_pretrained(load(), dir.path()).expect("reloads");
    assert_close(&case, "adapted", run(reloaded.model()), "reloaded");
}

#[test]
fn a_file_with_a_wrong_shape_is_refused_and_changes_nothing() {
    let case = Case::load("ia3_llama");
    let device = common::device();
    let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
    let run = |m: &LlamaForCausalLM| m.forward(ids.clone(), Some(mask.clone())).into_data();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(case.adapter().join("adapter_config.json"), dir.path().join("adapter_config.json")).expect("copies");
    let mut tensors = peft::io::tensors::read_safetensors(&case.adapter().join("adapter_model.safetensors")).expect("reads");
    let key = "base_model.model.model.layers.1.mlp.down_proj.ia3_l";
    let d_in = tensors[key].shape().to_vec()[1];
    // The output-scaling shape on a feed-forward layer: `[d_in, 1]` instead of `[1, d_in]`.
    tensors.insert(key.into(), TensorData::new(vec![1.0f32; d_in], [d_in, 1]));
    peft::io::tensors::write_safetensors(&dir.path().join("adapter_model.safetensors"), tensors.into_iter().collect()).expect("writes");

    let Err(e) = PeftModel::from_pretrained(llama(), dir.path()) else { panic!("a wrong shape") };
    assert!(matches!(&e, Error::ShapeMismatch { path, tensor, expected, actual }
        if path == "model.layers.1.mlp.down_proj" && tensor == "ia3_l" && expected == &[1, d_in] && actual == &[d_in, 1]), "{e:?}");

    let mut peft = PeftModel::from_pretrained(llama(), case.adapter()).expect("the good file");
    let before = run(peft.model());
    let e = peft.load_adapter(dir.path(), "bad").expect_err("a wrong shape");
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
    assert_eq!(peft.adapter_names(), ["default"]);
    assert!(max_abs_diff(run(peft.model()), &before) == 0.0, "outputs unchanged");
    let mut holding = 0;
    peft.model().visit_sites(&mut |_, site| holding += usize::from(site.holds("bad")));
    assert_eq!(holding, 0, "no site holds the failed adapter");
}

#[test]
fn fresh_vectors_start_at_one_or_at_random() {
    let device = common::device();
    let case = Case::load("ia3_llama");
    let (ids, mask) = (case.ints("input_ids", &device), case.ints("attention_mask", &device));
    let model = get_peft_model(llama(), Ia3Config::default().with_task_type(TaskType::CausalLm)).expect("defaults");
    assert_close(&case, "base", model.model().forward(ids.clone(), Some(mask.clone())).into_data(), "ones: the base model");
    assert_eq!(model.trainable_parameters_line(), case.meta["print_trainable_parameters"].as_str().expect("line"));
    // As in Python, given targets keep the default feed-forward modules even when they miss them.
    let q_only = get_peft_model(llama(), Ia3Config::new(["q_proj"])).expect("q_proj only");
    let PeftConfig::Ia3(config) = q_only.peft_config("default").expect("default") else { panic!("IA3") };
    assert_eq!((config.target_modules.names(), config.feedforward_modules.names()), (&["q_proj".to_string()][..], &["down_proj".to_string()][..]));
    assert_eq!(q_only.trainable_parameters().0, 2 * 32, "q_proj's outputs in two layers");
    let random = get_peft_model(llama(), Ia3Config::default().with_init_ia3_weights(false)).expect("defaults");
    let diff = max_abs_diff(random.model().forward(ids, Some(mask)).into_data(), &case.expected["base"]);
    assert!(diff > 1e-2, "init_ia3_weights = false draws the vectors");
}
