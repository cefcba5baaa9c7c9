//! AdaLoRA against the Python library (`fixtures/gen_adalora.py`): adapters with non-zero singular
//! values, the loss with its orthogonality penalty and its gradients, adapters cut to the ranks
//! the allocator kept, the budget schedule, and the allocator's masks.

use crate::common;

use burn::module::{Flag, Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use common::cases::{TOL, assert_close, assert_loss_and_gradients};
use common::fixtures::{Case, max_abs_diff, root};
use peft::io::tensors::read_safetensors;
use peft::lora::adalora::budget_schedule;
use peft::models::bert::BertForSequenceClassification;
use peft::models::llama::LlamaForCausalLM;
use peft::{AdaLoraConfig, AdapterSites, Labels, ModelInputs, PeftConfig, PeftModel, get_peft_model};
use std::path::Path;

fn llama() -> LlamaForCausalLM {
    LlamaForCausalLM::from_pretrained(root().join("models/llama"), &common::device()).expect("model loads")
}

fn bert() -> BertForSequenceClassification {
    BertForSequenceClassification::from_pretrained(root().join("models/bert"), &common::device()).expect("model loads")
}

fn ids_mask(case: &Case) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let device = common::device();
    (case.ints("input_ids", &device), case.ints("attention_mask", &device))
}

fn token_labels(ids: &Tensor<2, Int>, mask: &Tensor<2, Int>) -> Labels {
    Labels::Tokens(ids.clone().mask_fill(mask.clone().equal_elem(0), -100))
}

fn logits<M: peft::TaskModel + AdapterSites>(model: &PeftModel<M>, ids: &Tensor<2, Int>, mask: &Tensor<2, Int>) -> TensorData {
    model.logits(ids.clone(), Some(mask.clone())).expect("forward").into_data()
}

/// Outputs (adapted, disabled, merged), the trainable count and the saved file, as `check_case`,
/// through `PeftModel::forward`.
fn check_outputs<M: peft::TaskModel + AdapterSites>(case: &Case, load: impl Fn() -> M) -> PeftModel<M> {
    let (ids, mask) = ids_mask(case);
    let mut peft = PeftModel::from_pretrained(load(), case.adapter()).expect("loads the Python adapter");
    assert!(matches!(peft.peft_config("default").expect("config"), PeftConfig::AdaLora(_)));
    assert_close(case, "adapted", logits(&peft, &ids, &mask), "with the adapter");
    assert!(max_abs_diff(logits(&peft, &ids, &mask), &case.expected["base"]) > 1e-2, "the adapter changes the output");
    peft.set_adapters_disabled(true);
    assert_close(case, "base", logits(&peft, &ids, &mask), "adapters disabled");
    peft.set_adapters_disabled(false);

    let mut targeted = peft.targeted_modules("default").expect("default");
    targeted.sort();
    let strings = |k: &str| -> Vec<String> {
        case.meta[k].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let mut expected = strings("targeted_modules");
    expected.extend(strings("modules_to_save"));
    expected.sort();
    assert_eq!(targeted, expected);

    // Trainable parameters as Python counts them (its total also counts one `ranknum` scalar per
    // layer, which is no parameter here).
    peft.set_trainable("default", true).expect("trainable");
    assert_eq!(peft.trainable_parameters().0 as u64, case.meta["trainable_params"].as_u64().expect("count"));

    assert_saved_equal(&peft, &case.adapter());
    peft
}

/// Saving writes the keys and values of the Python library's file (and its rank_pattern).
fn assert_saved_equal<M: AdapterSites>(peft: &PeftModel<M>, python: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    peft.save_pretrained(dir.path()).expect("saves");
    let ours = read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("ours");
    let theirs = read_safetensors(&python.join("adapter_model.safetensors")).expect("theirs");
    assert_eq!(ours.keys().collect::<std::collections::BTreeSet<_>>(), theirs.keys().collect(), "the same keys");
    for (key, value) in &theirs {
        assert_eq!(ours[key].shape(), value.shape(), "{key}");
        if value.shape().iter().product::<usize>() > 0 {
            assert_eq!(max_abs_diff(ours[key].clone(), value), 0.0, "{key} round trips");
        }
    }
    let config = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("adapter_config.json")).expect("config")).expect("json")
    };
    assert_eq!(config(dir.path())["rank_pattern"], config(python)["rank_pattern"]);
}

#[test]
fn llama_adapter_outputs_merge_and_file_round_trip() {
    let case = Case::load("adalora_llama");
    let (ids, mask) = ids_mask(&case);
    let peft = check_outputs(&case, llama);
    let merged = peft.merge_and_unload().expect("merges");
    assert_close(&case, "merged", merged.forward(ids, Some(mask)).into_data(), "merged");
}

#[test]
fn llama_loss_includes_the_orthogonality_penalty_and_gradients_match() {
    let case = Case::load("adalora_llama");
    let (ids, mask) = ids_mask(&case);
    let device = common::device().autodiff();
    let base = LlamaForCausalLM::from_pretrained(root().join("models/llama"), &device).expect("model");
    let mut model = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let (ids, mask) = (ids.to_device(&device), mask.to_device(&device));
    let penalty = model.adalora_orth_reg().expect("a training AdaLoRA adapter");
    let inputs = ModelInputs { labels: Some(token_labels(&ids, &mask)), ..ModelInputs::ids_with_mask(ids.clone(), mask.clone()) };
    let loss = model.forward(inputs).expect("forward").loss.expect("loss");
    let (_, task_loss) = model.model().forward_with_loss(ids.clone(), Some(mask.clone()), ids.mask_fill(mask.equal_elem(0), -100));
    let penalty_value = penalty.into_scalar::<f32>();
    assert!(penalty_value > 0.1, "the penalty is not negligible: {penalty_value}");
    let sum = task_loss.into_scalar::<f32>() + penalty_value;
    assert!((loss.clone().into_scalar::<f32>() - sum).abs() < 1e-5, "loss = task loss + penalty");
    assert_eq!(assert_loss_and_gradients(&case, &model, loss), 12, "A, E and B of 4 layers");
}

#[test]
fn bert_sequence_classification() {
    let case = Case::load("adalora_bert_seq_cls");
    check_outputs(&case, bert);
    let (ids, mask) = ids_mask(&case);
    let device = common::device().autodiff();
    // The fixture's gradients were taken with the base model's dropout off.
    let base = BertForSequenceClassification::from_pretrained(root().join("models/bert"), &device).expect("model").map(&mut DropoutOff);
    let mut model = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let inputs = ModelInputs { labels: Some(Labels::Sequence(labels)), ..ModelInputs::ids_with_mask(ids.to_device(&device), mask.to_device(&device)) };
    let loss = model.forward(inputs).expect("forward").loss.expect("loss");
    // A, E and B of query/value in 2 layers, and the classifier copy.
    assert_eq!(assert_loss_and_gradients(&case, &model, loss), 3 * 4 + 2);
}

#[test]
fn an_adapter_trained_with_rank_allocation_loads_with_its_kept_ranks() {
    let case = Case::load("adalora_trained");
    let (ids, mask) = ids_mask(&case);
    let peft = PeftModel::from_pretrained(llama(), case.adapter()).expect("loads the rank-pruned adapter");
    let PeftConfig::AdaLora(config) = peft.peft_config("default").expect("config") else { panic!("AdaLoRA") };
    let pattern = config.rank_pattern.as_ref().expect("rank_pattern");
    let kept: Vec<usize> = pattern.values().map(|k| k.iter().filter(|x| **x).count()).collect();
    assert!(kept.iter().any(|&k| k < config.init_r), "ranks were pruned: {kept:?}");
    assert!(kept.contains(&0), "one layer lost every rank: {kept:?}");
    assert_close(&case, "adapted", logits(&peft, &ids, &mask), "trained adapter");
    assert_saved_equal(&peft, &case.adapter());
}

#[test]
fn the_budget_schedule_is_pythons_and_ends_at_target_r_per_module() {
    let case = Case::load("adalora_schedule");
    let settings = &case.meta["settings"];
    let get = |k: &str| settings[k].as_u64().expect(k) as usize;
    let config = AdaLoraConfig::new(get("total_step"))
        .with_init_r(get("init_r"))
        .with_target_r(get("target_r"))
        .with_tinit(get("tinit"))
        .with_tfinal(get("tfinal"))
        .with_delta_t(get("deltaT"))
        .with_target_modules(["q_proj", "v_proj"])
        .with_task_type(peft::TaskType::CausalLm);
    let budgets: Vec<i64> = case.expected["budget"].clone().convert::<i64>().try_into_vec().expect("ints");
    let masks: Vec<i64> = case.expected["mask"].clone().convert::<i64>().try_into_vec().expect("ints");
    for (step, (budget, mask)) in budgets.iter().zip(&masks).enumerate() {
        assert_eq!(budget_schedule(&config, 24, 8, step), (*budget as usize, *mask == 1), "step {step}");
    }

    // Run the allocator over the whole schedule with synthetic gradients: 8 ranks remain.
    let device = common::device().autodiff();
    let base = LlamaForCausalLM::from_pretrained(root().join("models/llama"), &device).expect("model");
    let mut model = get_peft_model(base, config.clone()).expect("attaches");
    let ids = Tensor::<2, Int>::from_data(TensorData::new((0..14).map(|i| (i * 7 % 90) as i64 + 3).collect::<Vec<_>>(), [2, 7]), &device);
    for step in 0..get("total_step") {
        let inputs = ModelInputs { labels: Some(Labels::Tokens(ids.clone())), ..ModelInputs::ids(ids.clone()) };
        let loss = model.forward(inputs).expect("forward").loss.expect("loss");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model.update_and_allocate(step, &grads).expect("allocates");
    }
    let PeftConfig::AdaLora(after) = model.peft_config("default").expect("config") else { panic!("AdaLoRA") };
    let pattern = after.rank_pattern.as_ref().expect("a rank pattern");
    assert_eq!(pattern.len(), 4);
    assert_eq!(pattern.values().flatten().filter(|k| **k).count(), 8, "{pattern:?}");
    let dir = tempfile::tempdir().expect("temp dir");
    model.save_pretrained(dir.path()).expect("saves");
    let file = read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("file");
    let ranks: usize = file.iter().filter(|(k, _)| k.ends_with("lora_E")).map(|(_, v)| v.shape()[0]).sum();
    assert_eq!(ranks, 8, "the file holds the kept ranks only");
    let reloaded = PeftModel::from_pretrained(llama(), dir.path()).expect("reloads");
    let trained = model.logits(ids.clone(), None).expect("forward").into_data();
    let ids = ids.to_device(&common::device());
    let mask = ids.ones_like();
    assert!(max_abs_diff(logits(&reloaded, &ids, &mask), &trained) < *TOL, "the cut file gives the same output");
}

/// The adapter folder `dir` with `settings` written into its config.
fn with_settings(dir: &Path, settings: &serde_json::Value) -> tempfile::TempDir {
    let out = tempfile::tempdir().expect("temp dir");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).expect("config")).expect("json");
    for (k, v) in settings.as_object().expect("object") {
        config[k] = v.clone();
    }
    std::fs::write(out.path().join("adapter_config.json"), config.to_string()).expect("writes");
    std::fs::copy(dir.join("adapter_model.safetensors"), out.path().join("adapter_model.safetensors")).expect("copies");
    out
}

#[test]
fn the_allocator_masks_what_python_masks() {
    let case = Case::load("adalora_allocate");
    let adapter = with_settings(&root().join("cases/adalora_llama/adapter"), &case.meta["allocator"]);
    let device = common::device().autodiff();
    let base = LlamaForCausalLM::from_pretrained(root().join("models/llama"), &device).expect("model");
    let mut model = PeftModel::from_pretrained(base, adapter.path()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let (ids, mask) = ids_mask(&case);
    let (ids, mask) = (ids.to_device(&device), mask.to_device(&device));
    let mut masked_steps = 0;
    for expected in case.meta["steps"].as_array().expect("steps") {
        let step = expected["step"].as_u64().expect("step") as usize;
        let inputs = ModelInputs { labels: Some(token_labels(&ids, &mask)), ..ModelInputs::ids_with_mask(ids.clone(), mask.clone()) };
        let loss = model.forward(inputs).expect("forward").loss.expect("loss");
        let python_loss = expected["loss"].as_f64().expect("loss") as f32;
        assert!((loss.clone().into_scalar::<f32>() - python_loss).abs() < *TOL, "step {step}: loss");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let allocation = model.update_and_allocate(step, &grads).expect("allocates");
        masked_steps += usize::from(same_mask_as_python(step, &allocation, &expected["rank_pattern"]));
    }
    assert_eq!(masked_steps, 3, "steps 4, 6 (deltaT) and 7 (total_step - tfinal) mask");
    let dir = tempfile::tempdir().expect("temp dir");
    model.save_pretrained(dir.path()).expect("saves");
    // The singular values after the last step, as Python's (the saved file cuts them; compare
    // the kept ones through the file and the dropped ones as zeros in Python's tensor).
    let file = read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("file");
    let PeftConfig::AdaLora(config) = model.peft_config("default").expect("config") else { panic!("AdaLoRA") };
    for (key, keep) in config.rank_pattern.as_ref().expect("pattern") {
        let python: Vec<f32> = case.expected[&format!("final.{key}")].clone().convert::<f32>().try_into_vec().expect("f32");
        let ours: Vec<f32> = file[&format!("base_model.model.{key}")].clone().convert::<f32>().try_into_vec().expect("f32");
        let kept: Vec<f32> = python.iter().zip(keep).filter(|(_, k)| **k).map(|(v, _)| *v).collect();
        assert_eq!(ours.len(), kept.len(), "{key}");
        assert!(ours.iter().zip(&kept).all(|(a, b)| (a - b).abs() < *TOL), "{key}: {ours:?} vs {kept:?}");
        assert!(python.iter().zip(keep).all(|(v, k)| *k || *v == 0.0), "{key}: Python zeroed the dropped ranks");
    }
}

/// Switches every module flag (dropout's training switch) off.
struct DropoutOff;

impl ModuleMapper for DropoutOff {
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        flag.with_value(false)
    }
}

#[test]
fn beside_a_lora_adapter_switching_and_mixed_batches() {
    let case = Case::load("adalora_llama");
    let lora = Case::load("llama_qv");
    let (ids, mask) = ids_mask(&case);
    let mut peft = PeftModel::from_pretrained(llama(), case.adapter()).expect("AdaLoRA");
    peft.load_adapter(lora.adapter(), "lora").expect("LoRA beside it");
    peft.set_adapter("default").expect("default");
    assert_close(&case, "adapted", logits(&peft, &ids, &mask), "AdaLoRA active");
    peft.set_adapter("lora").expect("lora");
    assert!(max_abs_diff(logits(&peft, &ids, &mask), &case.expected["adapted"]) > 1e-2, "the LoRA adapter differs");
    // Row 0 through AdaLoRA (its low-rank form, gathered per row), row 1 through the base alone.
    let rows = peft
        .with_batch_adapters(&["default", peft::BASE_ONLY], |m| m.forward(ids.clone(), Some(mask.clone())).into_data())
        .expect("mixed batch");
    let values: Vec<f32> = rows.convert::<f32>().try_into_vec().expect("f32");
    let half = values.len() / 2;
    let adapted: Vec<f32> = case.expected["adapted"].clone().convert::<f32>().try_into_vec().expect("f32");
    let base: Vec<f32> = case.expected["base"].clone().convert::<f32>().try_into_vec().expect("f32");
    let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(worst(&values[..half], &adapted[..half]) < *TOL, "row 0: AdaLoRA");
    // Row 1's real tokens (its last two are padding).
    let vocab = 96;
    let real = half - 2 * vocab;
    assert!(worst(&values[half..half + real], &base[half..half + real]) < *TOL, "row 1: the base model");
    // Unloading gives the base model back.
    let base_model = peft.unload();
    assert_close(&case, "base", base_model.forward(ids, Some(mask)).into_data(), "unloaded");
}

/// Collects the warnings logged through the `log` facade.
struct Warnings(std::sync::Mutex<Vec<String>>);

impl log::Log for Warnings {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata())
            && let Ok(mut seen) = self.0.lock()
        {
            seen.push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

static WARNINGS: Warnings = Warnings(std::sync::Mutex::new(Vec::new()));

#[test]
fn training_past_tinit_without_allocation_warns_once() {
    log::set_logger(&WARNINGS).expect("the only logger of this test process");
    log::set_max_level(log::LevelFilter::Warn);
    let device = common::device().autodiff();
    let base = LlamaForCausalLM::from_pretrained(root().join("models/llama"), &device).expect("model");
    let config = AdaLoraConfig::new(10).with_init_r(4).with_target_r(2).with_tinit(2).with_target_modules(["q_proj"]);
    let model = get_peft_model(base, config).expect("attaches");
    let ids = Tensor::<2, Int>::from_data(TensorData::new((3..17).collect::<Vec<i64>>(), [2, 7]), &device);
    let count = || WARNINGS.0.lock().map(|w| w.iter().filter(|m| m.contains("update_and_allocate")).count()).unwrap_or(0);
    for forward in 1..=6 {
        let inputs = ModelInputs { labels: Some(Labels::Tokens(ids.clone())), ..ModelInputs::ids(ids.clone()) };
        model.forward(inputs).expect("forward");
        // tinit + 1 forwards are fine; the next one warns, and only once.
        assert_eq!(count(), usize::from(forward > 3), "after {forward} forwards");
    }
}

/// Without `target_modules`, AdaLoRA takes the Python library's AdaLoRA defaults, which differ
/// from LoRA's on RoBERTa (key and the dense layers too).
#[test]
fn adalora_defaults_follow_the_python_table() {
    use peft::models::bert::RobertaForSequenceClassification;
    let base = || RobertaForSequenceClassification::from_pretrained(common::fixtures::root().join("models/roberta"), &common::device()).expect("roberta");
    let model = peft::get_peft_model(base(), peft::core::AdaLoraConfig::new(10).with_task_type(peft::TaskType::SeqCls)).expect("attaches");
    let targeted = model.targeted_modules("default").expect("default");
    for name in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "output.dense"] {
        assert!(targeted.iter().any(|t| t.ends_with(name)), "{name} in {targeted:?}");
    }
    let lora = peft::get_peft_model(base(), peft::LoraConfig::new(2).with_task_type(peft::TaskType::SeqCls)).expect("LoRA");
    assert!(lora.targeted_modules("default").expect("default").iter().all(|t| !t.ends_with(".key")), "LoRA keeps query/value");
}

fn toy(device: &burn::tensor::Device) -> common::toy::Toy {
    let weights = read_safetensors(&root().join("models/toy/model.safetensors")).expect("toy weights");
    common::toy::Toy::load(&weights, device)
}

/// AdaLoRA on a 2-D convolution (the Python library's `SVDConv2d`) beside a linear layer:
/// outputs, disabling, the trainable count, the saved file, merging and the gradients.
#[test]
fn toy_convolution_and_linear_layers_match_python() {
    let case = Case::load("adalora_toy");
    let device = common::device();
    let ids = case.ints("input_ids", &device);
    let mut peft = PeftModel::from_pretrained(toy(&device), case.adapter()).expect("loads the Python adapter");
    assert_close(&case, "adapted", peft.model().forward(ids.clone()).into_data(), "with the adapter");
    assert!(max_abs_diff(peft.model().forward(ids.clone()).into_data(), &case.expected["base"]) > 1e-2, "the adapter changes the output");
    assert_close(&case, "base", peft.with_adapters_disabled(|m| m.forward(ids.clone())).into_data(), "disabled");
    let mut targeted = peft.targeted_modules("default").expect("default");
    targeted.sort();
    assert_eq!(targeted, ["conv2d", "lin"]);
    peft.set_trainable("default", true).expect("trainable");
    // conv2d: A [3, 1 * 3 * 3], E [3, 1], B [4, 3]; lin: A [3, 4], E [3, 1], B [5, 3].
    assert_eq!(peft.trainable_parameters().0 as u64, case.meta["trainable_params"].as_u64().expect("count"));
    assert_eq!(peft.trainable_parameters().0, 27 + 3 + 12 + 12 + 3 + 15);
    assert_saved_equal(&peft, &case.adapter());

    // Merging and unmerging: the merged kernel gives the adapted output, unmerging the base's.
    peft.merge_adapter().expect("merges");
    assert_close(&case, "merged", peft.model().forward(ids.clone()).into_data(), "merged in place");
    peft.unmerge_adapters().expect("unmerges");
    assert_close(&case, "base", peft.with_adapters_disabled(|m| m.forward(ids.clone())).into_data(), "unmerged base");
    assert_close(&case, "adapted", peft.model().forward(ids.clone()).into_data(), "unmerged adapter");

    // A mixed batch: row 0 through AdaLoRA, row 1 through the base model alone.
    let rows = peft.with_batch_adapters(&["default", peft::BASE_ONLY], |m| m.forward(ids.clone()).into_data()).expect("mixed batch");
    let values: Vec<f32> = rows.convert::<f32>().try_into_vec().expect("f32");
    let adapted: Vec<f32> = case.expected["adapted"].clone().convert::<f32>().try_into_vec().expect("f32");
    let base: Vec<f32> = case.expected["base"].clone().convert::<f32>().try_into_vec().expect("f32");
    let half = values.len() / 2;
    let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(worst(&values[..half], &adapted[..half]) < *TOL, "row 0: AdaLoRA");
    assert!(worst(&values[half..], &base[half..]) < *TOL, "row 1: the base model");

    let merged = peft.merge_and_unload().expect("merges");
    assert_close(&case, "merged", merged.forward(ids).into_data(), "merged and unloaded");

    let device = common::device().autodiff();
    let ids = case.ints("input_ids", &device);
    let mut model = PeftModel::from_pretrained(toy(&device), case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let loss = model.model().forward(ids).powi_scalar(2).mean();
    assert_eq!(assert_loss_and_gradients(&case, &model, loss), 6, "A, E and B of the convolution and the linear layer");
}

/// ViT's patch embedding (a 3 -> 32 convolution with kernel and stride 8) with AdaLoRA, beside
/// q_proj/v_proj: outputs, the file, a fresh attach, merging, the gradients, and the loss with
/// the orthogonality penalty over the convolution's factors too.
#[test]
fn vit_patch_embedding_matches_python() {
    use peft::models::vit::ViTForImageClassification;
    let case = Case::load("adalora_vit");
    let device = common::device();
    let load = || ViTForImageClassification::from_pretrained(root().join("models/vit"), &device).expect("vit");
    let pixels: Tensor<4> = case.floats("pixel_values", &device);
    let run = |m: &ViTForImageClassification| m.forward(pixels.clone()).expect("forward").into_data();
    assert_close(&case, "base", run(&load()), "base model");
    let mut peft = PeftModel::from_pretrained(load(), case.adapter()).expect("loads the Python adapter");
    assert_close(&case, "adapted", run(peft.model()), "with the adapter");
    assert_close(&case, "base", peft.with_adapters_disabled(|m| run(m)), "disabled");
    let mut targeted = peft.targeted_modules("default").expect("default");
    targeted.sort();
    let expected: Vec<String> = serde_json::from_value(case.meta["targeted_modules"].clone()).expect("names");
    assert_eq!(targeted, expected);
    assert!(targeted.contains(&"vit.embeddings.patch_embeddings.projection".to_string()));
    // The trainable count is Python's; its total also counts one `ranknum` scalar per layer,
    // which is no parameter here.
    peft.set_trainable("default", true).expect("trainable");
    assert_eq!(peft.trainable_parameters().0 as u64, case.meta["trainable_params"].as_u64().expect("count"));
    assert_eq!(peft.trainable_parameters().1 as u64 + 5, case.meta["all_params"].as_u64().expect("count"));
    assert_saved_equal(&peft, &case.adapter());
    // The same config attached fresh builds a convolution layer at the patch embedding.
    let mut config = PeftConfig::from_dir(case.adapter()).expect("config");
    config.set_inference_mode(false);
    let fresh = get_peft_model(load(), config).expect("attaches");
    let mut fresh_targets = fresh.targeted_modules("default").expect("default");
    fresh_targets.sort();
    assert_eq!(fresh_targets, expected);
    assert_close(&case, "base", run(fresh.model()), "a fresh adapter (E = 0) leaves the output alone");
    let merged = peft.merge_and_unload().expect("merges");
    assert_close(&case, "merged", run(&merged), "merged");

    let device = common::device().autodiff();
    let base = ViTForImageClassification::from_pretrained(root().join("models/vit"), &device).expect("vit");
    let mut model = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let (_, loss) = model.model().forward_with_loss(case.floats("pixel_values", &device), labels).expect("forward");
    // Python's AdaLoraModel.forward adds the penalty over every lora_A and lora_B, the
    // convolution's `[r, c_in * kh * kw]` A included (its PeftModel without a task type skips it).
    let penalty = model.adalora_orth_reg().expect("a training AdaLoRA adapter");
    let with_penalty = loss.clone() + penalty;
    assert_close(&case, "loss_with_orth", with_penalty.into_data(), "loss with the orthogonality penalty");
    assert_eq!(assert_loss_and_gradients(&case, &model, loss), 15, "A, E and B of projection and 2 x q/v");
}

/// The rank allocator over a convolution and a linear layer masks what Python's masks: the
/// budget counts the convolution's ranks like any layer's, and its scores use the flattened
/// kernel's factors.
#[test]
fn the_allocator_masks_convolution_ranks_as_python() {
    let case = Case::load("adalora_toy_allocate");
    let device = common::device().autodiff();
    let mut model = PeftModel::from_pretrained(toy(&device), root().join("cases/adalora_toy/adapter")).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let ids = case.ints("input_ids", &device);
    let PeftConfig::AdaLora(config) = model.peft_config("default").expect("config").clone() else { panic!("AdaLoRA") };
    let mut masked_steps = 0;
    for expected in case.meta["steps"].as_array().expect("steps") {
        let step = expected["step"].as_u64().expect("step") as usize;
        let loss = model.model().forward(ids.clone()).powi_scalar(2).mean();
        let python_loss = expected["loss"].as_f64().expect("loss") as f32;
        assert!((loss.clone().into_scalar::<f32>() - python_loss).abs() < *TOL, "step {step}: loss");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let allocation = model.update_and_allocate(step, &grads).expect("allocates");
        assert_eq!(allocation.budget as u64, expected["budget"].as_u64().expect("budget"), "step {step}: budget");
        assert_eq!(budget_schedule(&config, 6, 2, step).0, allocation.budget, "3 + 3 ranks down to 1 + 1");
        masked_steps += usize::from(same_mask_as_python(step, &allocation, &expected["rank_pattern"]));
    }
    assert_eq!(masked_steps, 3, "steps 4, 6 (deltaT) and 7 (total_step - tfinal) mask");
    let PeftConfig::AdaLora(after) = model.peft_config("default").expect("config") else { panic!("AdaLoRA") };
    let pattern = after.rank_pattern.clone().expect("pattern");
    assert!(pattern["conv2d.lora_E"].iter().any(|k| *k), "the convolution keeps a rank");
    // Python's E after the last step: the dropped ranks zero, the kept ones equal ours.
    let dir = tempfile::tempdir().expect("temp dir");
    model.save_pretrained(dir.path()).expect("saves");
    let file = read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("file");
    for (key, keep) in &pattern {
        let python: Vec<f32> = case.expected[&format!("final.{key}")].clone().convert::<f32>().try_into_vec().expect("f32");
        let ours: Vec<f32> = file[&format!("base_model.model.{key}")].clone().convert::<f32>().try_into_vec().expect("f32");
        let kept: Vec<f32> = python.iter().zip(keep).filter(|(_, k)| **k).map(|(v, _)| *v).collect();
        assert_eq!(ours.len(), kept.len(), "{key}");
        assert!(ours.iter().zip(&kept).all(|(a, b)| (a - b).abs() < *TOL), "{key}: {ours:?} vs {kept:?}");
        assert!(python.iter().zip(keep).all(|(v, k)| *k || *v == 0.0), "{key}: Python zeroed the dropped ranks");
    }
    // The cut file loads back (conv2d's lora_A has one row of 9) with the trained output.
    let conv_a = &file["base_model.model.conv2d.lora_A"];
    assert_eq!(conv_a.shape().to_vec(), vec![1, 9]);
    let trained = model.model().forward(ids.clone()).into_data();
    let plain = common::device();
    let case_ids = |d: &burn::tensor::Device| case.ints("input_ids", d);
    let reloaded = PeftModel::from_pretrained(toy(&plain), dir.path()).expect("reloads the cut file");
    let diff = max_abs_diff(reloaded.model().forward(case_ids(&plain)).into_data(), &trained);
    assert!(diff < *TOL, "the cut file gives the same output: {diff}");
}

/// The copy of the gradients kept for the allocator holds the convolution's factors too.
#[test]
fn copied_gradients_include_the_convolution_factors() {
    let case = Case::load("adalora_toy");
    let device = common::device().autodiff();
    let mut model = PeftModel::from_pretrained(toy(&device), case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let loss = model.model().forward(case.ints("input_ids", &device)).powi_scalar(2).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let copy = model.copy_adalora_gradients(&grads);
    let ids = peft::lora::adalora::factor_ids(model.model(), "default");
    assert_eq!(ids.len(), 6, "A, E and B at two sites");
    for id in ids {
        let (a, b) = (grads.get::<2>(id).expect("gradient"), copy.get::<2>(id).expect("copied"));
        assert_eq!(max_abs_diff(a.into_data(), &b.into_data()), 0.0);
    }
}

/// On SegFormer, AdaLoRA attaches to the patch embeddings' strided, padded convolutions beside
/// the decode head's linear `proj` layers, and merging gives the output the adapted forward
/// computes on activations; its depthwise (grouped) convolutions are refused, naming the layer.
#[test]
fn segformer_convolutions_merge_as_they_run_and_grouped_ones_are_refused() {
    use peft::models::segformer::SegformerForSemanticSegmentation;
    let device = common::device();
    let load = || SegformerForSemanticSegmentation::from_pretrained(root().join("models/segformer"), &device).expect("segformer");
    match get_peft_model(load(), AdaLoraConfig::new(10).with_init_r(2).with_target_r(1).with_target_modules(["dwconv"])) {
        Err(peft::Error::Unsupported { what, .. }) => assert!(what.contains("mlp.dwconv.dwconv") && what.contains("groups"), "{what}"),
        other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
    }
    let config = AdaLoraConfig::new(10).with_init_r(3).with_target_r(1).with_target_modules(["proj"]).with_init_lora_weights(peft::InitLoraWeights::Random);
    let model = get_peft_model(load(), config).expect("attaches");
    let targeted = model.targeted_modules("default").expect("default");
    let convs = targeted.iter().filter(|t| t.contains("patch_embeddings")).count();
    assert_eq!(convs, 4, "one patch embedding convolution per stage: {targeted:?}");
    assert!(targeted.iter().any(|t| t.starts_with("decode_head.")), "the linear proj layers too: {targeted:?}");
    let pixels: Tensor<4> = Case::load("segformer_qv").floats("pixel_values", &device);
    let base = load().forward(pixels.clone()).into_data();
    let adapted = model.model().forward(pixels.clone()).into_data();
    assert!(max_abs_diff(adapted.clone(), &base) > 1e-3, "random factors change the output");
    let merged = model.merge_and_unload().expect("merges");
    let diff = max_abs_diff(merged.forward(pixels).into_data(), &adapted);
    // Standard normal factors make large outputs: compare relative to their size.
    let size = adapted.clone().convert::<f32>().try_into_vec::<f32>().expect("f32").iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(diff < 1e-5 * size.max(1.0), "merged differs from the adapted forward by {diff} (outputs up to {size})");
}

/// Asserts that step `step` masked as Python's allocator did (`python`: its rank pattern, `null`
/// when it did not mask); whether it masked.
fn same_mask_as_python(step: usize, allocation: &peft::Allocation, python: &serde_json::Value) -> bool {
    match &allocation.rank_pattern {
        None => {
            assert!(python.is_null(), "step {step}: Python masked");
            false
        }
        Some(ours) => {
            assert_eq!(&serde_json::to_value(ours).expect("json"), python, "step {step}: rank pattern");
            true
        }
    }
}
