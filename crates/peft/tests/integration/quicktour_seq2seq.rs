//! The PEFT quicktour on a sequence-to-sequence model: LoRA on the tiny mT5 (and T5) with the
//! default target modules, the trainable-parameters line Python prints, a few AdamW steps on a
//! copy task, saving, reloading onto the base named in the adapter's config, greedy generation.

use crate::common;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Int, Tensor, TensorData};
use common::fixtures::root;
use peft::models::t5::T5ForConditionalGeneration;
use peft::{LoraConfig, PeftModel, TaskType, get_peft_model};

fn quicktour_case() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("cases/t5_quicktour/case.json")).expect("case.json");
    serde_json::from_str(&text).expect("json")
}

fn config(model: &str) -> LoraConfig {
    LoraConfig::new(8)
        .with_lora_alpha(32.0)
        .with_lora_dropout(0.1)
        .with_task_type(TaskType::Seq2SeqLm)
        .with_base_model_name_or_path(format!("models/{model}"))
}

#[test]
fn trainable_parameters_line_equals_python() {
    let case = quicktour_case();
    for model in ["t5", "mt5"] {
        let base = T5ForConditionalGeneration::from_pretrained(root().join("models").join(model), &common::device()).expect("base");
        let peft = get_peft_model(base, config(model)).expect("attaches");
        assert_eq!(peft.trainable_parameters_line(), case[model]["print_trainable_parameters"].as_str().expect("line"), "{model}");
        let mut targeted = peft.targeted_modules("default").expect("default");
        targeted.sort();
        let expected: Vec<String> = case[model]["targeted_modules"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect();
        assert_eq!(targeted, expected, "{model}: default targets q and v");
    }
}

/// Source rows and, as labels, the same tokens followed by eos (1): learn to copy.
fn copy_task(device: &burn::tensor::Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let rows: [[i64; 5]; 4] = [[5, 17, 23, 42, 8], [61, 3, 77, 12, 30], [9, 9, 50, 71, 4], [88, 40, 16, 2, 65]];
    let source: Vec<i64> = rows.iter().flatten().copied().collect();
    let labels: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied().chain([1])).collect();
    (Tensor::from_data(TensorData::new(source, [4, 5]), device), Tensor::from_data(TensorData::new(labels, [4, 6]), device))
}

#[test]
fn train_save_reload_generate() {
    let device = common::device().autodiff();
    let base = T5ForConditionalGeneration::from_pretrained(root().join("models/mt5"), &device).expect("base");
    let mut model = get_peft_model(base, config("mt5")).expect("attaches");
    let (source, labels) = copy_task(&device);

    let mut optim = AdamWConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..25 {
        let (_, loss) = model.model().forward_with_loss(source.clone(), None, labels.clone());
        let value: Vec<f32> = loss.clone().into_data().convert::<f32>().try_into_vec().expect("f32");
        losses.push(value[0]);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < 0.5 * first, "the copy task is learned: loss {first} -> {last}");

    let dir = tempfile::tempdir().expect("temp dir");
    model.save_pretrained(dir.path()).expect("saves");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("adapter_config.json")).expect("config")).expect("json");
    let base_path = root().join(saved["base_model_name_or_path"].as_str().expect("base model recorded"));
    let plain = common::device();
    let base = T5ForConditionalGeneration::from_pretrained(base_path, &plain).expect("base from the adapter's config");
    let mut reloaded = PeftModel::from_pretrained(base, dir.path()).expect("reloads");

    // `valid()`: the trained model without autodiff, so dropout is off as in the reloaded one.
    let source = Tensor::<2, Int>::from_data(source.into_data(), &plain);
    let trained_ids = model.valid().model().generate_greedy(source.clone(), None, 8);
    let reloaded_ids = reloaded.model().generate_greedy(source.clone(), None, 8);
    assert_eq!(trained_ids, reloaded_ids);
    let base_ids = reloaded.with_adapters_disabled(|m| m.generate_greedy(source, None, 8));
    assert_ne!(trained_ids, base_ids, "the adapter changes what is generated");
    assert!(trained_ids.iter().all(|row| !row.is_empty()));
}
