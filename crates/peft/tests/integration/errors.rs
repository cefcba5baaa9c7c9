//! The catalogue of user mistakes in `docs/errors.md`: each one gets its typed error (a variant a
//! caller can match), and a failed load or attach leaves the model exactly as it was.

use crate::common;

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData};
use common::fixtures::{Case, root};
use common::{TinyNet, device, ids, max_diff};
use peft::io::tensors::{read_safetensors, write_safetensors};
use peft::models::gpt2::Gpt2LMHeadModel;
use peft::{Error, GenerationConfig, InitLoraWeights, LoraConfig, ModelInputs, PeftConfig, PeftModel, get_peft_model};

fn lora() -> LoraConfig {
    LoraConfig::new(2).with_target_modules(["q_proj", "v_proj"]).with_init_lora_weights(InitLoraWeights::Random)
}

/// A saved TinyNet adapter whose folder `edit` then spoils.
fn spoiled(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    get_peft_model(TinyNet::new(&device()), lora()).expect("attaches").save_pretrained(dir.path()).expect("saves");
    edit(dir.path());
    dir
}

/// Loads `dir` as a second adapter onto a model that already has one; the error, after checking
/// that the model is exactly as before (adapters, outputs).
fn load_fails(dir: &Path) -> Error {
    let device = device();
    let mut peft = get_peft_model(TinyNet::new(&device), lora()).expect("attaches");
    let before = peft.model().forward(ids(&device));
    let err = peft.load_adapter(dir, "second").expect_err("the load fails");
    assert_eq!(peft.adapter_names(), vec!["default".to_string()], "{err}: no adapter was added");
    assert_eq!(max_diff(peft.model().forward(ids(&device)), before), 0.0, "{err}: the outputs did not change");
    assert!(peft.targeted_modules("default").expect("still there").len() == 4);
    err
}

fn edit_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join("adapter_config.json");
    let json = std::fs::read_to_string(&path).expect("config");
    assert!(json.contains(from), "{json}");
    std::fs::write(&path, json.replacen(from, to, 1)).expect("rewrite");
}

fn gpt2() -> Gpt2LMHeadModel {
    Gpt2LMHeadModel::from_pretrained(root().join("models/gpt2"), &device()).expect("gpt2")
}

fn token_ids(values: Vec<i64>) -> Tensor<2, Int> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [1, len]), &device())
}

// ------------------------------------------------------------------------------- configs

#[test]
fn a_config_field_of_the_wrong_type() {
    let dir = spoiled(|d| edit_config(d, "\"r\": 2", "\"r\": \"two\""));
    assert!(matches!(load_fails(dir.path()), Error::Json { .. }));
}

#[test]
fn a_config_value_out_of_range() {
    let dir = spoiled(|d| edit_config(d, "\"lora_dropout\": 0.0", "\"lora_dropout\": 1.5"));
    assert!(matches!(load_fails(dir.path()), Error::InvalidConfig { field: "lora_dropout", .. }));
    let err = get_peft_model(TinyNet::new(&device()), LoraConfig::new(0)).expect_err("rank 0");
    assert!(matches!(err, Error::InvalidConfig { field: "r", .. }), "{err}");
}

#[test]
fn an_unknown_peft_type() {
    let dir = spoiled(|d| edit_config(d, "\"peft_type\": \"LORA\"", "\"peft_type\": \"MAGIC\""));
    assert!(matches!(load_fails(dir.path()), Error::Unsupported { .. }));
}

#[test]
fn target_modules_that_match_nothing() {
    let err = get_peft_model(TinyNet::new(&device()), LoraConfig::new(2).with_target_modules(["q_prj"])).expect_err("typo");
    assert!(matches!(&err, Error::TargetModulesNotFound { closest, .. } if closest.iter().any(|c| c.contains("q_proj"))), "{err}");
}

#[test]
fn modules_to_save_that_match_nothing() {
    let config = lora().with_modules_to_save(["classifier"]);
    let err = get_peft_model(TinyNet::new(&device()), config).expect_err("no classifier");
    assert!(matches!(err, Error::ModuleToSaveNotFound { .. }), "{err}");
}

// ------------------------------------------------------------------------------- files

#[test]
fn a_config_without_weights() {
    let dir = spoiled(|d| std::fs::remove_file(d.join("adapter_model.safetensors")).expect("rm"));
    let err = load_fails(dir.path());
    assert!(matches!(&err, Error::Io { path, .. } if path.ends_with("adapter_model.safetensors")), "{err}");
}

#[test]
fn weights_without_a_config() {
    let dir = spoiled(|d| std::fs::remove_file(d.join("adapter_config.json")).expect("rm"));
    let err = load_fails(dir.path());
    assert!(matches!(&err, Error::Io { path, .. } if path.ends_with("adapter_config.json")), "{err}");
}

#[test]
fn a_pickled_adapter_is_never_loaded() {
    let dir = spoiled(|d| {
        std::fs::rename(d.join("adapter_model.safetensors"), d.join("adapter_model.bin")).expect("mv");
    });
    let err = load_fails(dir.path());
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("convert it to safetensors"), "{err}");
}

#[test]
fn a_truncated_weights_file() {
    let dir = spoiled(|d| {
        let path = d.join("adapter_model.safetensors");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    });
    assert!(matches!(load_fails(dir.path()), Error::Format { format: "safetensors", .. }));
}

#[test]
fn a_corrupted_weights_file() {
    let dir = spoiled(|d| {
        let path = d.join("adapter_model.safetensors");
        let mut bytes = std::fs::read(&path).expect("read");
        // The header's JSON starts at byte 8: break its first brace.
        bytes[8] = b'#';
        std::fs::write(&path, bytes).expect("corrupt");
    });
    assert!(matches!(load_fails(dir.path()), Error::Format { .. }));
}

#[test]
fn weights_stored_as_integers() {
    let dir = spoiled(|d| {
        let path = d.join("adapter_model.safetensors");
        let mut tensors = read_safetensors(&path).expect("read");
        let key = "base_model.model.layers.0.q_proj.lora_A.weight";
        let shape = tensors[key].shape().to_vec();
        tensors.insert(key.into(), TensorData::new(vec![1i64; shape.iter().product()], shape));
        write_safetensors(&path, tensors.into_iter().collect()).expect("write");
    });
    let err = load_fails(dir.path());
    assert!(matches!(&err, Error::WrongDtype { key, .. } if key.contains("layers.0.q_proj")), "{err}");
}

#[test]
fn an_adapter_of_other_shapes() {
    let dir = spoiled(|d| edit_config(d, "\"r\": 2", "\"r\": 3"));
    assert!(matches!(load_fails(dir.path()), Error::ShapeMismatch { .. }));
}

#[test]
fn tensors_for_modules_the_model_lacks() {
    let dir = spoiled(|d| {
        let path = d.join("adapter_model.safetensors");
        let mut tensors = read_safetensors(&path).expect("read");
        tensors.insert("base_model.model.layers.9.q_proj.lora_A.weight".into(), TensorData::new(vec![0f32; 16], [2, 8]));
        write_safetensors(&path, tensors.into_iter().collect()).expect("write");
    });
    assert!(matches!(load_fails(dir.path()), Error::UnexpectedTensors { .. }));
}

#[test]
fn an_adapter_made_for_another_architecture() {
    // A BERT classifier's LoRA onto GPT-2: through the library ...
    let bert_adapter = Case::load("bert_seq_cls").adapter();
    let err = PeftModel::from_pretrained(gpt2(), &bert_adapter).expect_err("BERT's modules");
    assert!(matches!(&err, Error::AdapterForAnotherModel { model, .. } if model == "gpt2"), "{err}");
    // ... and through the auto entry point, which builds GPT-2's `score` head for it first.
    let Err(err) = PeftModel::from_pretrained_auto_with_base(&bert_adapter, root().join("models/gpt2"), &device()) else {
        panic!("a BERT adapter loaded onto GPT-2")
    };
    assert!(matches!(err, Error::AdapterForAnotherModel { .. }), "{err}");
    assert!(err.to_string().contains("another model"), "{err}");
}

#[test]
fn a_missing_model_folder() {
    let err = Gpt2LMHeadModel::from_pretrained(root().join("models/nope"), &device()).expect_err("no folder");
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

// ------------------------------------------------------------------------------- adapter names

#[test]
fn adapter_names_that_clash() {
    let device = device();
    let mut peft = get_peft_model(TinyNet::new(&device), lora()).expect("attaches");
    for name in ["q_proj", "layers", "lora_A", "__base__", "a.b", "", "default"] {
        let err = peft.add_adapter(name, lora()).expect_err(name);
        assert!(matches!(err, Error::InvalidAdapterName { .. }), "{name}: {err}");
    }
    assert_eq!(peft.adapter_names(), vec!["default".to_string()]);
}

#[test]
fn an_unknown_adapter_name() {
    let mut peft = get_peft_model(TinyNet::new(&device()), lora()).expect("attaches");
    assert!(matches!(peft.set_adapter("nope"), Err(Error::UnknownAdapter { .. })));
    assert!(matches!(peft.delete_adapter("nope"), Err(Error::UnknownAdapter { .. })));
}

#[test]
fn a_mixed_batch_with_an_unknown_name_or_the_wrong_count() {
    let device = device();
    let mut peft = get_peft_model(TinyNet::new(&device), lora()).expect("attaches");
    let err = peft.with_batch_adapters(&["default", "nope"], |m| m.forward(ids(&device))).expect_err("unknown");
    assert!(matches!(err, Error::UnknownAdapter { .. }), "{err}");
    // `ids` has two rows.
    let err = peft.with_batch_adapters(&["default", "default", "__base__"], |m| m.forward(ids(&device))).expect_err("three names");
    assert!(matches!(err, Error::BatchAdaptersMismatch { names: 3, batch: 2 }), "{err}");
}

#[test]
fn merging_while_adapters_are_disabled() {
    let mut peft = get_peft_model(TinyNet::new(&device()), lora()).expect("attaches");
    peft.set_adapters_disabled(true);
    assert!(matches!(peft.merge_and_unload(), Err(Error::InvalidState(_))));
}

#[test]
fn merging_a_prompt_method() {
    let peft = PeftModel::from_pretrained(gpt2(), Case::load("gpt2_prompt_tuning").adapter()).expect("loads");
    assert!(matches!(peft.merge_and_unload(), Err(Error::Unsupported { .. })));
}

// ------------------------------------------------------------------------------- inputs

#[test]
fn token_ids_past_the_vocabulary() {
    let peft = PeftModel::new(gpt2());
    // The tiny GPT-2 has 96 tokens.
    let err = peft.logits(token_ids(vec![1, 2, 99999]), None).expect_err("past the vocabulary");
    assert!(matches!(err, Error::TokenIdOutOfRange { id: 99999, vocab_size: 96, .. }), "{err}");
    let err = peft.logits(token_ids(vec![-1, 2]), None).expect_err("negative");
    assert!(matches!(err, Error::TokenIdOutOfRange { id: -1, .. }), "{err}");
}

#[test]
fn sequences_past_the_position_table() {
    let peft = PeftModel::new(gpt2());
    // The tiny GPT-2 has 64 positions.
    let err = peft.logits(token_ids(vec![1; 500]), None).expect_err("too long");
    assert!(matches!(err, Error::SequenceTooLong { len: 500, max_positions: 64, .. }), "{err}");
    assert!(peft.logits(token_ids(vec![1; 64]), None).is_ok());
    // Generation counts the tokens it will add.
    let err = peft.generate(ModelInputs::ids(token_ids(vec![1; 60])), &GenerationConfig::greedy(10)).expect_err("60 + 10 > 64");
    assert!(matches!(&err, Error::SequenceTooLong { fix, .. } if fix.contains("max_new_tokens to 5")), "{err}");
    assert!(peft.generate(ModelInputs::ids(token_ids(vec![1; 60])), &GenerationConfig::greedy(5)).is_ok());
    // Prompt tuning's virtual tokens take positions too.
    let prompt = PeftModel::from_pretrained(gpt2(), Case::load("gpt2_prompt_tuning").adapter()).expect("loads");
    let virtual_tokens = match prompt.peft_config("default").expect("config") {
        PeftConfig::PromptTuning(c) => c.prompt_learning.num_virtual_tokens,
        other => panic!("a prompt tuning config, got {other:?}"),
    };
    let err = prompt.logits(token_ids(vec![1; 64]), None).expect_err("virtual + 64 > 64");
    assert!(matches!(err, Error::SequenceTooLong { len, .. } if len == 64 + virtual_tokens), "{err}");
}

#[test]
fn a_mask_of_another_shape_than_the_ids() {
    let peft = PeftModel::new(gpt2());
    let mask = Tensor::<2, Int>::ones([1, 2], &device());
    let err = peft.logits(token_ids(vec![1, 2, 3]), Some(mask)).expect_err("mask shape");
    assert!(matches!(err, Error::InputShape { input: "attention_mask", .. }), "{err}");
}

#[test]
fn inputs_embeds_of_the_wrong_width() {
    let peft = PeftModel::new(gpt2());
    let embeds = Tensor::<3>::zeros([1, 3, 7], &device());
    let err = peft.forward(ModelInputs { inputs_embeds: Some(embeds), ..Default::default() }).expect_err("width 7");
    assert!(matches!(err, Error::InputShape { input: "inputs_embeds", .. }), "{err}");
}

#[test]
fn images_of_another_size() {
    let vit = peft::models::vit::ViTForImageClassification::from_pretrained(root().join("models/vit"), &device()).expect("vit");
    let peft = PeftModel::new(vit);
    let pixels = Tensor::<4>::zeros([1, 3, 7, 7], &device());
    let err = peft.forward(ModelInputs { pixel_values: Some(pixels), ..Default::default() }).expect_err("7x7");
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
}
