//! `PeftModel::from_pretrained_auto`: the adapter names its base and task; outputs equal the
//! Python reference's for each family.

mod common;

use common::cases::assert_close;
use common::fixtures::Case;
use peft::PeftModel;
use peft::models::auto::{AutoInputs, AutoModel, Head, ModelInfo};

/// Loads the case's adapter through its config alone and compares the adapted output.
fn auto_case(name: &str) {
    let case = Case::load(name);
    let device = common::device();
    let mut peft = PeftModel::<AutoModel>::from_pretrained_auto(case.adapter(), &device).expect("base and adapter load from the config");
    let mut inputs = AutoInputs::default();
    if case.has("pixel_values") {
        inputs.pixel_values = Some(case.floats("pixel_values", &device));
    } else if case.has("input_features") {
        inputs.input_features = Some(case.floats("input_features", &device));
        inputs.decoder_input_ids = Some(case.ints("input_ids", &device));
    } else {
        inputs.input_ids = Some(case.ints("input_ids", &device));
        inputs.attention_mask = case.has("attention_mask").then(|| case.ints("attention_mask", &device));
        inputs.decoder_input_ids = case.has("decoder_input_ids").then(|| case.ints("decoder_input_ids", &device));
    }
    let out = peft.model().forward(&inputs).expect("runs").into_data();
    assert_close(&case, "adapted", out, &format!("{name} through AutoModel"));
    // Counts and trainable biases go by module path, which the enum must not change.
    peft.set_trainable("default", true).expect("trainable");
    assert_eq!(peft.trainable_parameters_line(), case.meta["print_trainable_parameters"].as_str().expect("line"), "{name}");
}

#[test]
fn llama_causal_lm() {
    auto_case("llama_qv");
}

#[test]
fn gpt2_causal_lm_and_classifier() {
    auto_case("gpt2_lora");
    auto_case("gpt2_seq_cls");
}

#[test]
fn bloom_token_classification() {
    auto_case("bloom_token_cls");
}

#[test]
fn bert_and_roberta_classifiers_and_features() {
    auto_case("bert_seq_cls");
    auto_case("roberta_seq_cls");
    auto_case("bert_features");
}

#[test]
fn whisper_seq2seq() {
    auto_case("whisper_qv");
}

#[test]
fn t5_and_mt5_text_to_text_and_features() {
    auto_case("t5_qv");
    auto_case("mt5_all_linear");
    auto_case("t5_features");
}

#[test]
fn vit_and_segformer_images() {
    auto_case("vit_qv");
    auto_case("vit_features");
    auto_case("segformer_qv");
    auto_case("segformer_cls");
}

#[test]
fn unsupported_family_and_head_name_what_is_supported() {
    let device = common::device();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "mamba"}"#).expect("write");
    let err = AutoModel::from_pretrained(dir.path(), None, &device).expect_err("mamba").to_string();
    assert!(err.contains("mamba") && err.contains("gpt2") && err.contains("whisper"), "{err}");
    let llama = common::fixtures::root().join("models/llama");
    let err = AutoModel::from_pretrained(&llama, Some(Head::QuestionAnswering), &device).expect_err("no QA head").to_string();
    assert!(err.contains("question-answering") && err.contains("llama"), "{err}");
    assert_eq!(ModelInfo::from_dir(&llama).expect("config").head(None).expect("head"), Head::CausalLm);
}

#[test]
fn missing_base_folder_says_how_to_pass_it() {
    let case = Case::load("llama_qv");
    let dir = tempfile::tempdir().expect("temp dir");
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(case.adapter().join(f), dir.path().join(f)).expect("copy");
    }
    let err = PeftModel::<AutoModel>::from_pretrained_auto(dir.path(), &common::device()).expect_err("no base here").to_string();
    assert!(err.contains("models/llama") && err.contains("from_pretrained_auto_with_base"), "{err}");
    let peft = PeftModel::<AutoModel>::from_pretrained_auto_with_base(dir.path(), common::fixtures::root().join("models/llama"), &common::device());
    assert!(peft.is_ok());
}
