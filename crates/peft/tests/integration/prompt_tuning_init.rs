//! Prompt tuning's `TEXT` and `SAMPLE_VOCAB` initialisations through `get_peft_model`, as the
//! Python library's prompt-tuning guide uses them: the table starts as word embeddings of the
//! model, and only the table trains.

use crate::common;

use burn::tensor::{Int, Tensor, TensorData};
use common::fixtures::root;
use peft::core::{PromptTuningConfig, PromptTuningInit, TaskModel};
use peft::models::llama::LlamaForCausalLM;
use peft::{Error, TaskType, get_peft_model};
use std::path::Path;

fn llama() -> LlamaForCausalLM {
    LlamaForCausalLM::from_pretrained(root().join("models/llama"), &common::device()).expect("llama")
}

/// A word-level `tokenizer.json` (`w1` .. `w95` are ids 1..95) with a BOS id 1 added in front,
/// as Llama's tokenizer adds `<s>`.
fn word_tokenizer(dir: &Path) {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), 0.into());
    for i in 1..96 {
        vocab.insert(format!("w{i}"), i.into());
    }
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "w1", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"w1": {"id": "w1", "ids": [1], "tokens": ["w1"]}}},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(dir.join("tokenizer.json"), json.to_string()).expect("write tokenizer");
}

fn table(model: &peft::PeftModel<LlamaForCausalLM>) -> Tensor<2> {
    let dir = tempfile::tempdir().expect("temp dir");
    model.save_pretrained(dir.path()).expect("saves");
    let file = peft::io::tensors::read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("file");
    Tensor::from_data(file["prompt_embeddings"].clone(), &common::device())
}

fn embeddings_of(ids: &[i64]) -> Tensor<2> {
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), &common::device());
    let rows = llama().embed_tokens(ids).expect("embeds");
    let [_, n, d] = rows.dims();
    rows.reshape([n, d])
}

#[test]
fn text_init_starts_from_the_texts_token_embeddings() {
    let dir = tempfile::tempdir().expect("temp dir");
    word_tokenizer(dir.path());
    let config = PromptTuningConfig::new(5).with_init_text("w7 w8", dir.path().display().to_string()).with_task_type(TaskType::CausalLm);
    let model = get_peft_model(llama(), config).expect("TEXT init through the config");
    assert_eq!(model.trainable_parameters().0, 5 * 32, "only the table trains");
    // BOS, w7, w8, then repeated and cut to 5 rows, as the Python library does.
    let want = embeddings_of(&[1, 7, 8, 1, 7]);
    assert!(common::max_diff(table(&model), want) < 1e-6);
}

#[test]
fn sample_vocab_init_starts_from_rows_of_the_vocabulary() {
    let config = PromptTuningConfig::new(4).with_prompt_tuning_init(PromptTuningInit::SampleVocab);
    let model = get_peft_model(llama(), config).expect("SAMPLE_VOCAB init");
    let rows = table(&model);
    let vocab = embeddings_of(&(0..96).collect::<Vec<_>>());
    for r in 0..4 {
        let row = rows.clone().slice([r..r + 1, 0..32]);
        let nearest = (vocab.clone() - row).abs().sum_dim(1).min().into_scalar::<f32>();
        assert!(nearest < 1e-6, "row {r} is a word embedding of the model");
    }
}

#[test]
fn text_init_without_a_readable_tokenizer_names_the_field() {
    let mut text = PromptTuningConfig::new(3).with_init_text("w3", "/nonexistent/tokenizer");
    let Err(e) = get_peft_model(llama(), text.clone()) else { panic!("unreadable") };
    assert!(matches!(e, Error::InvalidConfig { .. }) && e.to_string().contains("/nonexistent/tokenizer"), "{e}");
    text.tokenizer_name_or_path = None;
    let Err(e) = get_peft_model(llama(), text) else { panic!("no tokenizer") };
    assert!(e.to_string().contains("tokenizer_name_or_path"), "{e}");
}
