//! BERT and RoBERTa: outputs against transformers' (fixtures made by `fixtures/generate.py`),
//! module paths, masking, position ids, loss and loading errors.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::AdapterSites;
use peft_core::Error;
use peft_io::tensors::{TensorMap, read_safetensors, write_safetensors};
use peft_models::bert::{BertConfig, BertForSequenceClassification, BertModel, ModelType, RobertaForSequenceClassification, cross_entropy};
use crate::common::fixtures;

/// `expected.safetensors` of a case, and its inputs on the device.
fn case(name: &str, device: &Device) -> (TensorMap, Tensor<2, Int>, Tensor<2, Int>) {
    let expected = read_safetensors(&fixtures().join("cases").join(name).join("expected.safetensors")).expect("fixture");
    let int = |k: &str| Tensor::<2, Int>::from_data(expected[k].clone(), device);
    let (ids, mask) = (int("input_ids"), int("attention_mask"));
    (expected, ids, mask)
}

fn device() -> Device {
    Device::default()
}

fn tiny(model_type: ModelType) -> BertConfig {
    BertConfig {
        model_type,
        vocab_size: 40,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 24,
        max_position_embeddings: 24,
        type_vocab_size: 2,
        pad_token_id: if model_type == ModelType::Roberta { 1 } else { 0 },
        num_labels: 3,
        ..BertConfig::default()
    }
}

fn ids(rows: Vec<Vec<i64>>, device: &Device) -> Tensor<2, Int> {
    let (b, s) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [b, s]), device)
}

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32")[0]
}

/// How far from the Python reference outputs may lie on the run's backend (one table:
/// `Backend::tolerance`, per backend and dtype).
static TOLERANCE: std::sync::LazyLock<f32> = std::sync::LazyLock::new(|| peft_core::backend::tolerance(burn::tensor::DType::F32));

#[test]
fn bert_sequence_classification_matches_transformers() {
    let device = device();
    let model = BertForSequenceClassification::from_pretrained(fixtures().join("models/bert"), &device).expect("loads");
    let (expected, ids, mask) = case("bert_seq_cls", &device);
    let diff = max_diff(model.forward(ids, Some(mask), None), Tensor::from_data(expected["base"].clone(), &device));
    println!("bert_seq_cls base logits: max abs diff {diff:e}");
    assert!(diff < *TOLERANCE, "{diff}");
}

#[test]
fn roberta_sequence_classification_matches_transformers() {
    let device = device();
    let model = RobertaForSequenceClassification::from_pretrained(fixtures().join("models/roberta"), &device).expect("loads");
    let (expected, ids, mask) = case("roberta_seq_cls", &device);
    let diff = max_diff(model.forward(ids, Some(mask), None), Tensor::from_data(expected["base"].clone(), &device));
    println!("roberta_seq_cls base logits: max abs diff {diff:e}");
    assert!(diff < *TOLERANCE, "{diff}");
}

#[test]
fn bert_features_match_transformers_on_real_tokens() {
    let device = device();
    // The folder holds a BertForSequenceClassification: keys start with `bert.`.
    let model = BertModel::from_pretrained(fixtures().join("models/bert"), &device).expect("loads");
    assert!(model.pooler.is_some());
    let (expected, ids, mask) = case("bert_features", &device);
    let hidden = model.forward(ids, Some(mask.clone()), None);
    let keep = mask.float().unsqueeze_dim::<3>(2);
    let diff = max_diff(hidden * keep.clone(), Tensor::<3>::from_data(expected["base"].clone(), &device) * keep);
    println!("bert_features last_hidden_state (mask 1): max abs diff {diff:e}");
    assert!(diff < *TOLERANCE, "{diff}");

    // RoBERTa's classifier checkpoint has no pooler, so its base model is loaded without one.
    let roberta = BertModel::from_pretrained(fixtures().join("models/roberta"), &device).expect("loads");
    assert!(roberta.pooler.is_none());
}

/// A model folder with the bert fixture's config and the given tensors.
fn folder_with(tensors: TensorMap, config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.json"), config).expect("config");
    write_safetensors(&dir.path().join("model.safetensors"), tensors.into_iter().collect()).expect("weights");
    dir
}

#[test]
fn loading_errors_are_typed() {
    let device = device();
    let bert = fixtures().join("models/bert");
    let config = std::fs::read_to_string(bert.join("config.json")).expect("config");
    let tensors = read_safetensors(&bert.join("model.safetensors")).expect("weights");

    let other = folder_with(tensors.clone(), &config.replace(r#""model_type": "bert""#, r#""model_type": "gpt2""#));
    let err = BertModel::from_pretrained(other.path(), &device).expect_err("gpt2 is not bert");
    assert!(matches!(&err, Error::Unsupported { what, .. } if what.contains("gpt2")), "{err}");

    let mut short = tensors.clone();
    short.shift_remove("bert.encoder.layer.1.attention.self.key.weight");
    let dir = folder_with(short, &config);
    let err = BertForSequenceClassification::from_pretrained(dir.path(), &device).expect_err("a weight is missing");
    assert!(matches!(&err, Error::MissingTensor { key, .. } if key == "bert.encoder.layer.1.attention.self.key.weight"), "{err}");

    // A bare BertModel file: the classifier is missing unless a new head is asked for.
    let bare: TensorMap =
        tensors.iter().filter_map(|(k, v)| k.strip_prefix("bert.").map(|k| (k.to_string(), v.clone()))).collect();
    let dir = folder_with(bare, &config);
    let err = BertForSequenceClassification::from_pretrained(dir.path(), &device).expect_err("no classifier");
    assert!(matches!(&err, Error::MissingTensor { key, .. } if key == "classifier.weight"), "{err}");
    let model = BertForSequenceClassification::from_pretrained_with(dir.path(), &device, true).expect("new head allowed");
    let reference = BertModel::from_pretrained(&bert, &device).expect("loads");
    let ids = ids(vec![vec![5, 6, 7]], &device);
    assert!(max_diff(model.bert.forward(ids.clone(), None, None), reference.forward(ids, None, None)) < 1e-6);
}

/// Parameter paths as transformers keys: `base_layer` segments dropped, as `peft-io` maps them.
struct Paths {
    stack: Vec<String>,
    out: Vec<String>,
}

impl ModuleVisitor for Paths {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
        self.out.push(self.stack.iter().filter(|s| *s != "base_layer").cloned().collect::<Vec<_>>().join("."));
    }
}

fn param_keys<M: Module>(m: &M) -> Vec<String> {
    let mut v = Paths { stack: Vec::new(), out: Vec::new() };
    m.visit(&mut v);
    v.out.sort();
    v.out
}

fn transformers_keys(prefix: &str, layers: usize, pooler: bool) -> Vec<String> {
    let mut keys = Vec::new();
    for m in ["word_embeddings", "position_embeddings", "token_type_embeddings"] {
        keys.push(format!("{prefix}embeddings.{m}.weight"));
    }
    keys.extend([format!("{prefix}embeddings.LayerNorm.weight"), format!("{prefix}embeddings.LayerNorm.bias")]);
    for i in 0..layers {
        for m in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"]
            .into_iter()
            .chain(["attention.output.LayerNorm", "output.LayerNorm"])
        {
            keys.extend(["weight", "bias"].map(|p| format!("{prefix}encoder.layer.{i}.{m}.{p}")));
        }
    }
    if pooler {
        keys.extend(["weight", "bias"].map(|p| format!("{prefix}pooler.dense.{p}")));
    }
    keys
}

#[test]
fn parameter_paths_are_transformers_keys() {
    let device = device();
    let config = tiny(ModelType::Bert);
    let mut expected = transformers_keys("", 2, true);
    expected.sort();
    assert_eq!(param_keys(&BertModel::new(&config, &device)), expected);

    let mut expected = transformers_keys("bert.", 2, true);
    expected.extend(["classifier.weight".into(), "classifier.bias".into()]);
    expected.sort();
    assert_eq!(param_keys(&BertForSequenceClassification::new(&config, &device)), expected);

    let config = tiny(ModelType::Roberta);
    let mut expected = transformers_keys("roberta.", 2, false);
    expected.extend(["dense", "out_proj"].into_iter().flat_map(|m| ["weight", "bias"].map(|p| format!("classifier.{m}.{p}"))));
    expected.sort();
    assert_eq!(param_keys(&RobertaForSequenceClassification::new(&config, &device)), expected);
}

#[test]
fn sites_are_every_linear_and_embedding_under_transformers_paths() {
    let device = device();
    let model = BertForSequenceClassification::new(&tiny(ModelType::Bert), &device);
    let sites: Vec<String> = model.site_paths().into_iter().map(|(p, _)| p).collect();
    let mut from_params: Vec<String> = param_keys(&model)
        .into_iter()
        .filter(|k| !k.contains("LayerNorm") && k.ends_with(".weight"))
        .map(|k| k.trim_end_matches(".weight").to_string())
        .collect();
    from_params.sort();
    let mut sorted = sites.clone();
    sorted.sort();
    assert_eq!(sorted, from_params);
    assert_eq!(sites[0], "bert.embeddings.word_embeddings");
    assert!(sites.contains(&"bert.encoder.layer.1.attention.self.value".to_string()));
    assert_eq!(model.output_head_paths(), vec!["classifier".to_string()]);

    let model = RobertaForSequenceClassification::new(&tiny(ModelType::Roberta), &device);
    let sites: Vec<String> = model.site_paths().into_iter().map(|(p, _)| p).collect();
    assert_eq!(sites.len(), 3 + 2 * 6 + 2);
    assert_eq!(sites[sites.len() - 2..], ["classifier.dense".to_string(), "classifier.out_proj".to_string()]);
    assert!(!sites.iter().any(|s| s.contains("pooler")));
}

#[test]
fn padding_keys_receive_no_attention() {
    let device = device();
    let model = BertModel::new(&tiny(ModelType::Bert), &device);
    let mask = ids(vec![vec![1, 1, 1, 1, 0, 0]], &device);
    let a = model.forward(ids(vec![vec![5, 6, 7, 8, 0, 0]], &device), Some(mask.clone()), None);
    let b = model.forward(ids(vec![vec![5, 6, 7, 8, 30, 31]], &device), Some(mask), None);
    let short = model.forward(ids(vec![vec![5, 6, 7, 8]], &device), None, None);
    assert!(max_diff(a.clone().narrow(1, 0, 4), b.narrow(1, 0, 4)) < 1e-5);
    assert!(max_diff(a.narrow(1, 0, 4), short) < 1e-5);
}

#[test]
fn roberta_positions_skip_padding() {
    // Left padding moves BERT's positions but not RoBERTa's: real tokens count from pad + 1.
    let device = device();
    let model = BertModel::new(&tiny(ModelType::Roberta), &device);
    let padded = model.forward(ids(vec![vec![1, 1, 5, 6, 7]], &device), Some(ids(vec![vec![0, 0, 1, 1, 1]], &device)), None);
    let plain = model.forward(ids(vec![vec![5, 6, 7]], &device), None, None);
    assert!(max_diff(padded.narrow(1, 2, 3), plain) < 1e-5);
}

#[test]
fn forward_embeds_matches_forward() {
    let device = device();
    for kind in [ModelType::Bert, ModelType::Roberta] {
        let model = BertForSequenceClassification::new(&tiny(kind), &device);
        let input = ids(vec![vec![3, 9, 4, 11], vec![2, 8, 12, 13]], &device);
        let types = Some(ids(vec![vec![0, 0, 1, 1], vec![0, 1, 1, 1]], &device));
        let direct = model.forward(input.clone(), None, types.clone());
        let embeds = model.bert.embed_tokens(input);
        assert!(max_diff(direct, model.forward_embeds(embeds, None, types)) < 1e-5, "{kind:?}");
    }
}

#[test]
fn cross_entropy_is_mean_negative_log_likelihood_skipping_ignored() {
    let device = device();
    let logits = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 0.5, 0.0, -1.0, 3.0, 2.0, 2.0, 2.0], [3, 3]), &device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2, -100], [3]), &device);
    let lse = |r: [f32; 3]| r.iter().map(|x| x.exp()).sum::<f32>().ln();
    let expected = ((lse([1.0, 2.0, 0.5]) - 2.0) + (lse([0.0, -1.0, 3.0]) - 3.0)) / 2.0;
    let loss = cross_entropy(logits, labels).into_data().try_to_vec::<f32>().expect("f32")[0];
    assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
}
