//! `PeftModel::from_pretrained_auto`: the adapter names its base and task; outputs equal the
//! Python reference's for each family.

use crate::common;

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

/// A copy of the fixture model `name` saved as a bare encoder: no classifier tensors, no label
/// names, `architectures` the base class (what MiniLM's folder looks like).
fn headless(name: &str, base_class: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let src = common::fixtures::root().join("models").join(name);
    let out = dir.join(name);
    std::fs::create_dir_all(&out).expect("mkdir");
    let mut tensors = peft::io::tensors::read_safetensors(&src.join("model.safetensors")).expect("weights");
    tensors.retain(|k, _| !k.starts_with("classifier.") && !k.starts_with("score."));
    peft::io::tensors::write_safetensors(&out.join("model.safetensors"), tensors.into_iter().collect()).expect("write");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).expect("config")).expect("json");
    config["architectures"] = serde_json::json!([base_class]);
    let object = config.as_object_mut().expect("object");
    object.remove("id2label");
    object.remove("label2id");
    std::fs::write(out.join("config.json"), config.to_string()).expect("write config");
    out
}

/// A classifier head saved only in the adapter's `modules_to_save` (Python's
/// `AutoModelForSequenceClassification(num_labels=N)` + LoRA on a bare encoder): the base is
/// built with a head of the saved size and the adapter's copy computes the output.
#[test]
fn a_head_that_lives_only_in_the_adapter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let device = common::device();
    let cases = [("bert_seq_cls", "bert", "BertModel"), ("roberta_seq_cls", "roberta", "RobertaModel"), ("gpt2_seq_cls", "gpt2_seq_cls", "GPT2Model")];
    for (case_name, model, class) in cases {
        let case = Case::load(case_name);
        let base = headless(model, class, dir.path());
        let err = AutoModel::from_pretrained(&base, Some(Head::SequenceClassification), &device).expect_err("the folder has no head");
        assert!(err.to_string().contains("classifier") || err.to_string().contains("score"), "{err}");
        let config = peft::PeftConfig::from_dir(case.adapter()).expect("config");
        assert_eq!(peft::saved_head_size(&case.adapter(), &config).expect("reads"), Some(3), "{case_name}");
        let peft = PeftModel::<AutoModel>::from_pretrained_auto_with_base(case.adapter(), &base, &device).expect("the head comes from the adapter");
        let mut inputs = AutoInputs::ids(case.ints("input_ids", &device));
        inputs.attention_mask = case.has("attention_mask").then(|| case.ints("attention_mask", &device));
        let out = peft.forward(inputs).expect("runs").logits.into_data();
        assert_close(&case, "adapted", out, &format!("{case_name} on a headless base"));
    }
}

/// Copies the files of `from` into `cache` as the snapshot `main` points to for `repo_id`.
fn cache_repo(cache: &std::path::Path, repo_id: &str, commit: &str, from: &std::path::Path) -> std::path::PathBuf {
    let repo = cache.join(format!("models--{}", repo_id.replace('/', "--")));
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).expect("snapshot");
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    std::fs::write(repo.join("refs/main"), commit).expect("ref");
    for entry in std::fs::read_dir(from).expect("fixture").flatten() {
        std::fs::copy(entry.path(), snapshot.join(entry.file_name())).expect("copy");
    }
    snapshot
}

/// The auto entry point on Hub ids: the adapter by id, its base by the id its config names,
/// both from a cache laid out on disk (downloads off); the outputs are the folders'.
#[test]
fn adapter_and_base_by_hub_id_from_the_cache() {
    let case = Case::load("vit_qv");
    let cache = tempfile::tempdir().expect("cache");
    cache_repo(cache.path(), "org/tiny-vit", "aaaa", &common::fixtures::root().join("models/vit"));
    let adapter = cache_repo(cache.path(), "org/vit-qv", "bbbb", &case.adapter());
    let config_path = adapter.join("adapter_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).expect("config")).expect("json");
    config["base_model_name_or_path"] = "org/tiny-vit".into();
    std::fs::write(&config_path, config.to_string()).expect("write");
    let hub = peft::io::hub::Hub::with_cache(cache.path()).offline(true);
    let device = common::device();
    let peft = PeftModel::<AutoModel>::from_pretrained_auto_with_hub("org/vit-qv", &hub, &device).expect("both come from the cache");
    let inputs = AutoInputs { pixel_values: Some(case.floats("pixel_values", &device)), ..AutoInputs::default() };
    assert_close(&case, "adapted", peft.model().forward(&inputs).expect("runs").into_data(), "vit_qv by Hub id");
    // The base's id resolves alone too; without it in the cache, the error names the file.
    let parsed = peft::PeftConfig::from_dir(&adapter).expect("config");
    assert_eq!(peft::resolve_base_with_hub(&adapter, &parsed, &hub).expect("cached"), cache.path().join("models--org--tiny-vit/snapshots/aaaa"));
    std::fs::remove_dir_all(cache.path().join("models--org--tiny-vit")).expect("remove");
    let err = PeftModel::<AutoModel>::from_pretrained_auto_with_hub("org/vit-qv", &hub, &device).expect_err("base gone").to_string();
    assert!(err.contains("org/tiny-vit") && err.contains("`config.json`") && err.contains("HF_HUB_OFFLINE"), "{err}");
}

/// Token types (BERT's segments for a pair of texts) reach the encoder through `ModelInputs`,
/// are checked against the model's table, and are refused by models without one.
#[test]
fn token_type_ids_reach_bert_and_are_checked() {
    use peft::burn::tensor::{Int, Tensor};
    use peft::{Error, ModelInputs};
    let device = common::device();
    let case = Case::load("bert_seq_cls");
    let peft = PeftModel::<AutoModel>::from_pretrained_auto(case.adapter(), &device).expect("loads");
    let ids = case.ints("input_ids", &device);
    let mask = case.ints("attention_mask", &device);
    let [batch, len] = ids.dims();
    let second_half = Tensor::<2, Int>::ones([batch, len], &device).slice_fill([0..batch, 0..len / 2], 0);
    let logits = |types: Option<Tensor<2, Int>>| {
        let inputs = ModelInputs { token_type_ids: types, ..ModelInputs::ids_with_mask(ids.clone(), mask.clone()) };
        peft.forward(inputs).map(|o| o.logits.into_data())
    };
    let plain = logits(None).expect("runs");
    let zeros = logits(Some(Tensor::zeros([batch, len], &device))).expect("runs");
    assert_eq!(plain, zeros, "absent token types are zeros");
    let paired = logits(Some(second_half.clone())).expect("runs");
    let AutoModel::BertSeqCls(bert) = peft.model() else { panic!("a BERT classifier") };
    let direct = bert.forward(ids.clone(), Some(mask.clone()), Some(second_half)).into_data();
    assert_eq!(paired, direct, "the types reach the embeddings");
    assert_ne!(paired, plain, "and change the output");

    let err = logits(Some(Tensor::full([batch, len], 2, &device))).expect_err("past the table of 2 types");
    assert!(matches!(err, Error::TokenIdOutOfRange { input: "token_type_ids", id: 2, vocab_size: 2 }), "{err}");
    let err = logits(Some(Tensor::zeros([batch, len + 1], &device))).expect_err("one type per token");
    assert!(matches!(err, Error::InputShape { input: "token_type_ids", .. }), "{err}");

    let gpt2 = PeftModel::<AutoModel>::from_pretrained_auto(Case::load("gpt2_lora").adapter(), &device).expect("loads");
    let ids = Tensor::<2, Int>::from_data([[1, 2, 3]], &device);
    let err = gpt2.forward(ModelInputs::ids(ids.clone()).with_token_type_ids(Tensor::zeros([1, 3], &device))).expect_err("no types");
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}
