//! `bias="all"` adapters and mixed-adapter batches against the Python library
//! (`fixtures/gen_bias_mixed.py`): every bias the file carries reaches the model, and each row of
//! a mixed batch uses its own adapter, classifier copy included, or the call fails with a typed error.

use crate::common;

use burn::module::{Flag, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Int, Tensor, TensorData};
use common::cases::{TOL, assert_close, check_case};
use common::fixtures::{Case, max_abs_diff, root};
use peft::io::tensors::{read_safetensors, write_safetensors};
use peft::models::bert::BertForSequenceClassification;
use peft::{AdapterSites, BASE_ONLY, Error, PeftModel};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

fn bert() -> BertForSequenceClassification {
    bert_on(&common::device())
}

fn bert_on(device: &burn::tensor::Device) -> BertForSequenceClassification {
    BertForSequenceClassification::from_pretrained(root().join("models/bert"), device).expect("bert")
}

fn logits(m: &BertForSequenceClassification, case: &Case) -> TensorData {
    let device = common::device();
    m.forward(case.ints("input_ids", &device), Some(case.ints("attention_mask", &device)), None).into_data()
}

// ------------------------------------------------------------------------------------ bias="all"

#[test]
fn bias_all_matches_python_and_saves_its_keys() {
    // Logits with the adapter, disabled (trained biases kept) and merged, the trainable line,
    // and a re-save holding exactly Python's keys and values
    // (`classifier.original_module.bias` and `classifier.modules_to_save.bias` included).
    check_case("bias_all_bert_seq_cls", bert, |m, ids, mask| m.forward(ids, Some(mask), None));
}

/// Every parameter of a module by its path (Burn's field names joined by `.`).
#[derive(Default)]
struct Paths {
    path: Vec<String>,
    found: Vec<(String, ParamId, TensorData, bool)>,
}

impl ModuleVisitor for Paths {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        self.found.push((self.path.join("."), param.id, value.clone().into_data(), value.is_require_grad()));
    }
}

fn params<M: Module>(m: &M) -> Vec<(String, ParamId, TensorData, bool)> {
    let mut v = Paths::default();
    m.visit(&mut v);
    v.found
}

/// Whether Burn path `burn` is the parameter Python calls `python`: every adapter site has a
/// `base_layer` in Burn, while Python has one only where an adapter wraps the module.
fn same_param(burn: &str, python: &str) -> bool {
    burn == python || burn.replace(".base_layer.", ".") == python
}

fn param(m: &impl Module, path: &str) -> TensorData {
    params(m).into_iter().find(|(p, ..)| same_param(p, path)).unwrap_or_else(|| panic!("no parameter {path}")).2
}

#[test]
fn bias_all_writes_layer_norm_biases_into_the_model() {
    let case = Case::load("bias_all_bert_seq_cls");
    let file = read_safetensors(&case.adapter().join("adapter_model.safetensors")).expect("file");
    let peft = PeftModel::from_pretrained(bert(), case.adapter()).expect("loads");
    let base = bert();
    for key in ["bert.embeddings.LayerNorm.bias", "bert.encoder.layer.1.output.LayerNorm.bias", "bert.pooler.dense.bias"] {
        let saved = &file[&format!("base_model.model.{key}")];
        assert_eq!(max_abs_diff(param(peft.model(), key), saved), 0.0, "{key} is the file's");
        assert!(max_abs_diff(param(&base, key), saved) > 1e-3, "{key}: the fixture changed it");
    }
    // The base classifier's bias is the file's `original_module` entry; the copy has its own.
    let original = &file["base_model.model.classifier.original_module.bias"];
    assert_eq!(max_abs_diff(param(peft.model(), "classifier.base_layer.bias"), original), 0.0);
    let copy = &file["base_model.model.classifier.bias"];
    assert_eq!(max_abs_diff(param(peft.model(), "classifier.adapters.default.copy.bias"), copy), 0.0);
}

/// Switches every module flag (dropout's training switch) off.
struct DropoutOff;

impl ModuleMapper for DropoutOff {
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        flag.with_value(false)
    }
}

#[test]
fn bias_all_trains_every_bias_with_python_gradients() {
    let device = common::device().autodiff();
    let case = Case::load("bias_all_bert_seq_cls");
    let mut model = PeftModel::from_pretrained(bert_on(&device).map(&mut DropoutOff), case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let (_, loss) =
        model.model().forward_with_loss(case.ints("input_ids", &device), Some(case.ints("attention_mask", &device)), None, labels);
    assert!(max_abs_diff(loss.clone().into_data(), &case.expected["loss"]) < *TOL, "loss");
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
    let all = params(model.model());
    let mut compared = 0;
    for (key, expected) in case.expected.iter().filter_map(|(k, v)| Some((k.strip_prefix("grad.")?, v))) {
        let (_, id, _, trains) = all.iter().find(|(p, ..)| same_param(p, key)).unwrap_or_else(|| panic!("no parameter {key}"));
        assert!(trains, "{key} trains under bias=all");
        let grad = grads.get::<1>(*id).unwrap_or_else(|| panic!("no gradient for {key}"));
        assert!(max_abs_diff(grad.into_data(), expected) < *TOL, "gradient of {key}");
        compared += 1;
    }
    assert_eq!(compared, 18, "embeddings LayerNorm, 8 per layer (q, k, v, 2 dense, intermediate, 2 LayerNorm), pooler");
    // The base classifier is replaced by its copy, whose bias trains instead (as in Python).
    let frozen = all.iter().find(|(p, ..)| p == "classifier.base_layer.bias").expect("classifier bias");
    assert!(!frozen.3, "the copied module's own bias is frozen");
    assert!(all.iter().any(|(p, _, _, t)| p == "classifier.adapters.default.copy.bias" && *t));
}

/// The adapter folder of `case` copied to a temp dir with `edit` applied to its tensors.
fn edited_adapter(case: &Case, edit: impl FnOnce(&mut peft::io::tensors::TensorMap)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let from = case.adapter();
    std::fs::copy(from.join("adapter_config.json"), dir.path().join("adapter_config.json")).expect("config");
    let mut tensors = read_safetensors(&from.join("adapter_model.safetensors")).expect("tensors");
    edit(&mut tensors);
    write_safetensors(&dir.path().join("adapter_model.safetensors"), tensors.into_iter().collect()).expect("writes");
    dir
}

fn load_fails(dir: &Path) -> (Error, PeftModel<BertForSequenceClassification>) {
    // A model that already holds an adapter, so a failed load must leave both it and the base alone.
    let mixed = Case::load("mixed_bert_seq_cls");
    let mut peft = PeftModel::new(bert());
    peft.load_adapter(mixed.adapter().join("a"), "a").expect("a");
    let err = peft.load_adapter(dir, "bias").expect_err("fails");
    (err, peft)
}

#[test]
fn bias_all_load_checks_every_bias_before_writing_any() {
    let case = Case::load("bias_all_bert_seq_cls");
    let key = "base_model.model.bert.encoder.layer.1.output.LayerNorm.bias";
    let dir = edited_adapter(&case, |t| {
        t.insert(key.into(), TensorData::new(vec![0f32; 5], [5]));
    });
    let (err, peft) = load_fails(dir.path());
    match &err {
        Error::ShapeMismatch { tensor, expected, actual, .. } => {
            assert!(tensor.ends_with("layer.1.output.LayerNorm.bias"), "{err}");
            assert_eq!((expected.as_slice(), actual.as_slice()), (&[32usize][..], &[5usize][..]));
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
    // Biases planned before the bad one (the embeddings' LayerNorm) were not written either.
    let base = bert();
    for p in ["bert.embeddings.LayerNorm.bias", "bert.encoder.layer.0.attention.self.query.base_layer.bias"] {
        assert_eq!(max_abs_diff(param(peft.model(), p), &param(&base, p)), 0.0, "{p} unchanged");
    }
    assert_eq!(peft.adapter_names(), vec!["a".to_string()]);

    // A bias key no parameter of the model has is reported, not dropped.
    let dir = edited_adapter(&case, |t| {
        t.insert("base_model.model.bert.encoder.layer.7.output.LayerNorm.bias".into(), TensorData::new(vec![0f32; 32], [32]));
    });
    let (err, _) = load_fails(dir.path());
    assert!(matches!(&err, Error::UnexpectedTensors { keys, .. } if keys.iter().any(|k| k.contains("layer.7"))), "{err}");
}

// --------------------------------------------------------------------------- mixed-adapter batches

/// The two SEQ_CLS adapters `a` and `b`, each with its own classifier copy, `a` active.
fn two_adapters(case: &Case) -> PeftModel<BertForSequenceClassification> {
    let mut peft = PeftModel::new(bert());
    peft.load_adapter(case.adapter().join("a"), "a").expect("a");
    peft.load_adapter(case.adapter().join("b"), "b").expect("b");
    peft
}

fn rows(case: &Case) -> Vec<String> {
    case.meta["mixed_rows"].as_array().expect("rows").iter().map(|v| v.as_str().expect("name").to_string()).collect()
}

#[test]
fn mixed_batch_uses_each_rows_classifier_copy_as_python() {
    let case = Case::load("mixed_bert_seq_cls");
    let mut peft = two_adapters(&case);
    assert_close(&case, "base", peft.with_adapters_disabled(|m| logits(m, &case)), "disabled");
    assert_close(&case, "adapted_a", logits(peft.model(), &case), "a");
    peft.set_trainable("a", true).expect("trainable");
    assert_eq!(peft.trainable_parameters_line(), case.meta["print_trainable_parameters"].as_str().expect("line"));
    peft.set_adapter("b").expect("b");
    assert_close(&case, "adapted_b", logits(peft.model(), &case), "b");

    let names = rows(&case);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(refs, ["a", "b", BASE_ONLY, "b"]);
    let mixed = peft.with_batch_adapters(&refs, |m| logits(m, &case)).expect("mixed");
    assert_close(&case, "mixed", mixed, "mixed batch");
    // Rows are cleared afterwards: the active adapter alone again.
    assert_close(&case, "adapted_b", logits(peft.model(), &case), "after the mixed batch");

    // The same through set_batch_adapters.
    peft.set_batch_adapters(Some(&refs)).expect("sets");
    assert_close(&case, "mixed", logits(peft.model(), &case), "mixed batch (set)");
    peft.set_batch_adapters(None).expect("clears");
}

#[test]
fn mixed_batch_with_another_row_count_is_an_error() {
    let case = Case::load("mixed_bert_seq_cls");
    let mut peft = two_adapters(&case);
    let three = ["a", "b", BASE_ONLY];
    let err = peft.with_batch_adapters(&three, |m| logits(m, &case)).expect_err("3 names, 4 rows");
    assert!(matches!(err, Error::BatchAdaptersMismatch { names: 3, batch: 4 }), "{err}");
    assert_close(&case, "adapted_a", logits(peft.model(), &case), "rows cleared after the error");

    peft.set_batch_adapters(Some(&three)).expect("names are checked, not the batch");
    let _ = logits(peft.model(), &case);
    let err = peft.set_batch_adapters(None).expect_err("clearing reports the mismatch");
    assert!(matches!(err, Error::BatchAdaptersMismatch { names: 3, batch: 4 }), "{err}");
    assert_close(&case, "adapted_a", logits(peft.model(), &case), "rows cleared all the same");

    let err = peft.with_batch_adapters(&["a", "c", "b", "b"], |_| ()).expect_err("unknown");
    assert!(matches!(&err, Error::UnknownAdapter { name, .. } if name == "c"), "{err}");
}

#[test]
fn mixed_batch_with_a_merged_adapter_is_refused_as_in_python() {
    let case = Case::load("mixed_bert_seq_cls");
    let mut peft = two_adapters(&case);
    peft.merge_adapters(&["a"]).expect("merges");
    let err = peft.with_batch_adapters(&["a", "b", BASE_ONLY, "b"], |m| logits(m, &case)).expect_err("merged");
    match &err {
        Error::MergedAdaptersInMixedBatch { merged, .. } => assert_eq!(merged, &vec!["a".to_string()]),
        other => panic!("expected MergedAdaptersInMixedBatch, got {other}"),
    }
    // Python: "Cannot pass `adapter_names` when there are merged adapters, please call `unmerge_adapter` first."
    assert!(case.meta["errors"]["merged"].as_str().expect("python").contains("merged adapters"));
    assert!(err.to_string().contains("unmerge_adapters"), "{err}");
    let err = peft.set_batch_adapters(Some(&["b", "b", "b", "b"])).expect_err("merged");
    assert!(matches!(err, Error::MergedAdaptersInMixedBatch { .. }), "{err}");
    peft.model().visit_sites(&mut |path, site| assert!(site.mixed_batch().is_none(), "{path}: nothing set"));
}

#[test]
fn merging_is_all_or_nothing() {
    let case = Case::load("mixed_bert_seq_cls");
    let mut peft = two_adapters(&case);
    // A mixed batch set on the classifier alone (the last site): every LoRA site of `a` merges
    // before the classifier refuses, and all of it must be undone.
    let batch = peft::core::adapted::MixedBatch::new(&["a", "a", "a", "a"]);
    peft.model_mut().visit_sites_mut(&mut |path, mut site| {
        if path == "classifier" {
            site.set_rows(Some(&batch), path).expect("sets");
        }
    });
    let err = peft.merge_adapters(&["a"]).expect_err("the classifier refuses");
    assert!(matches!(err, Error::InvalidState(_)), "{err}");
    peft.model().visit_sites(&mut |path, site| assert!(site.merged().is_empty(), "{path} was left merged"));
    peft.set_batch_adapters(None).expect("clears");
    assert_close(&case, "adapted_a", logits(peft.model(), &case), "unchanged by the failed merge");
}

#[test]
fn state_comes_back_when_the_closure_panics() {
    let case = Case::load("mixed_bert_seq_cls");
    let mut peft = two_adapters(&case);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _ = peft.with_batch_adapters(&["a", "b", BASE_ONLY, "b"], |_| panic!("closure fails"));
    }));
    assert!(result.is_err(), "the panic propagates");
    peft.model().visit_sites(&mut |path, site| assert!(site.mixed_batch().is_none(), "{path} kept its rows"));
    assert_close(&case, "adapted_a", logits(peft.model(), &case), "no rows left");

    let result = catch_unwind(AssertUnwindSafe(|| peft.with_adapters_disabled(|_| panic!("closure fails"))));
    assert!(result.is_err(), "the panic propagates");
    assert_close(&case, "adapted_a", logits(peft.model(), &case), "adapters back on");
}

// ------------------------------------------------------------------ other site kinds (no Python)

/// Adds 0.5 to every parameter of adapter `name`'s `modules_to_save` copies, which start equal
/// to the base layer (so that a row using the copy differs from a base row).
struct ShiftCopies(&'static str, Vec<String>);

impl ModuleMapper for ShiftCopies {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.1.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.1.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let in_copy = self.1.windows(3).any(|w| w[0] == "adapters" && w[1] == self.0 && w[2] == "copy");
        if in_copy { param.map(|t| t.add_scalar(0.5)) } else { param }
    }
}

fn row(t: &Tensor<3>, i: usize) -> Tensor<3> {
    t.clone().narrow(0, i, 1)
}

#[test]
fn embedding_sites_mix_per_row_and_refuse_merged_adapters() {
    use common::{TinyNet, ids, max_diff};
    use peft::{InitLoraWeights, LoraConfig, get_peft_model};
    let device = common::device();
    let random = |targets: &[&str]| {
        LoraConfig::new(2).with_target_modules(targets.iter().map(|t| t.to_string()).collect::<Vec<String>>()).with_init_lora_weights(InitLoraWeights::Random)
    };
    let mut peft = get_peft_model(TinyNet::new(&device), random(&["embed", "q_proj"])).expect("LoRA on the embedding");
    peft.add_adapter("copy", random(&["v_proj"]).with_modules_to_save(["embed"])).expect("a copy of the embedding");
    *peft.model_mut() = peft.model().clone().map(&mut ShiftCopies("copy", Vec::new()));

    let lora = {
        peft.set_adapter("default").expect("default");
        peft.model().forward(ids(&device))
    };
    peft.set_adapter("copy").expect("copy");
    let copy = peft.model().forward(ids(&device));
    let base = peft.with_adapters_disabled(|m| m.forward(ids(&device)));
    assert!(max_diff(row(&copy, 0), row(&base, 0)) > 1e-2 && max_diff(row(&lora, 1), row(&base, 1)) > 1e-2);

    for (names, expected) in [(["copy", "default"], [&copy, &lora]), (["default", BASE_ONLY], [&lora, &base])] {
        let mixed = peft.with_batch_adapters(&names, |m| m.forward(ids(&device))).expect("mixed");
        for (i, want) in expected.iter().enumerate() {
            assert!(max_diff(row(&mixed, i), row(want, i)) < 1e-5, "{names:?}: row {i}");
        }
    }

    // Merged into the table, the LoRA update would reach every row: refused, naming the site.
    peft.merge_adapters(&["default"]).expect("merges");
    let err = peft.with_batch_adapters(&["copy", BASE_ONLY], |m| m.forward(ids(&device))).expect_err("merged");
    assert!(matches!(&err, Error::MergedAdaptersInMixedBatch { path, .. } if path == "embed"), "{err}");
}
