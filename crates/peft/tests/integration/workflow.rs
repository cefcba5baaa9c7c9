//! The PEFT workflow on a tiny model: attach, count, train, save, load, merge, several adapters.

use crate::common;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Tensor;
use common::{TinyNet, device, ids, max_diff};
use peft::{Error, InitLoraWeights, LoraConfig, PeftModel, get_peft_model};

fn config() -> LoraConfig {
    LoraConfig::new(2).with_lora_alpha(4.0).with_target_modules(["q_proj", "v_proj"])
}

fn random_config() -> LoraConfig {
    config().with_init_lora_weights(InitLoraWeights::Random)
}

#[test]
fn a_fresh_adapter_is_the_identity_and_a_random_one_is_not() {
    let device = device();
    let base = TinyNet::new(&device);
    let expected = base.forward(ids(&device));
    let peft = get_peft_model(base.clone(), config()).expect("attaches");
    assert!(max_diff(peft.model().forward(ids(&device)), expected.clone()) < 1e-6);

    let mut peft = get_peft_model(base, random_config()).expect("attaches");
    assert!(max_diff(peft.model().forward(ids(&device)), expected.clone()) > 1e-3);
    let disabled = peft.with_adapters_disabled(|m| m.forward(ids(&device)));
    assert!(max_diff(disabled, expected) < 1e-6);
}

#[test]
fn trainable_parameters_match_the_python_line() {
    let device = device();
    let peft = get_peft_model(TinyNet::new(&device), config()).expect("attaches");
    // 4 targeted 8x8 layers, each A [8,2] + B [2,8].
    let lora = 4 * (8 * 2 + 2 * 8);
    let base = TinyNet::new(&device).num_params();
    assert_eq!(peft.trainable_parameters(), (lora, base + lora));
    let line = peft.trainable_parameters_line();
    let percent = 100.0 * lora as f64 / (base + lora) as f64;
    assert_eq!(line, format!("trainable params: {lora} || all params: {} || trainable%: {percent:.4}", peft::thousands(base + lora)));
}

/// Collects parameter ids by whether the path runs through `adapters`.
#[derive(Default)]
struct Ids {
    path: Vec<String>,
    adapter: Vec<ParamId>,
    base: Vec<ParamId>,
}

impl ModuleVisitor for Ids {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if self.path.iter().any(|s| s == "adapters") { self.adapter.push(p.id) } else { self.base.push(p.id) }
    }
}

#[test]
fn training_moves_only_the_adapter() {
    let device = device().autodiff();
    let mut peft = get_peft_model(TinyNet::new(&device), random_config()).expect("attaches");
    let mut ids_of = Ids::default();
    peft.visit(&mut ids_of);
    assert_eq!(ids_of.adapter.len(), 8, "A and B on four layers");

    let loss = peft.model().forward(ids(&device)).powi_scalar(2).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &peft);
    for id in &ids_of.adapter {
        assert!(grads.get::<2>(*id).is_some(), "adapter parameter {id} has a gradient");
    }
    for id in &ids_of.base {
        assert!(grads.get::<2>(*id).is_none() && grads.get::<1>(*id).is_none(), "frozen parameter {id} has no gradient");
    }

    let before = peft.clone();
    let mut optim = AdamWConfig::new().init();
    peft = optim.step(1e-2, peft, grads);
    let moved = |a: &PeftModel<TinyNet>, b: &PeftModel<TinyNet>| {
        let w = |m: &PeftModel<TinyNet>| m.model().layers[0].q_proj.base_layer.weight.val();
        max_diff(w(a), w(b))
    };
    assert_eq!(moved(&before, &peft), 0.0, "base weight unchanged");
    let out_before = before.model().forward(ids(&device));
    assert!(max_diff(peft.model().forward(ids(&device)), out_before) > 1e-6, "the adapter learned");
}

#[test]
fn save_and_load_give_the_same_outputs_and_hub_keys() {
    let device = device();
    let peft = get_peft_model(TinyNet::new(&device), random_config()).expect("attaches");
    let expected = peft.model().forward(ids(&device));
    let dir = tempfile::tempdir().expect("temp dir");
    peft.save_pretrained(dir.path()).expect("saves");

    let tensors = peft::io::tensors::read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("reads");
    let keys: Vec<&str> = tensors.keys().map(String::as_str).collect();
    assert!(keys.contains(&"base_model.model.layers.0.q_proj.lora_A.weight"), "{keys:?}");
    assert_eq!(tensors["base_model.model.layers.1.v_proj.lora_A.weight"].shape().to_vec(), vec![2, 8], "[r, in]");
    assert_eq!(tensors["base_model.model.layers.1.v_proj.lora_B.weight"].shape().to_vec(), vec![8, 2], "[out, r]");

    let loaded = PeftModel::from_pretrained(TinyNet::new(&device), dir.path()).expect("loads");
    assert!(max_diff(loaded.model().forward(ids(&device)), expected) < 1e-6);
}

#[test]
fn a_failed_load_changes_nothing() {
    let device = device();
    let peft = get_peft_model(TinyNet::new(&device), random_config()).expect("attaches");
    let dir = tempfile::tempdir().expect("temp dir");
    peft.save_pretrained(dir.path()).expect("saves");
    // Claim another rank than the file holds.
    let path = dir.path().join("adapter_config.json");
    let json = std::fs::read_to_string(&path).expect("config").replace("\"r\": 2", "\"r\": 3");
    std::fs::write(&path, json).expect("rewrite");

    let mut target = get_peft_model(TinyNet::new(&device), random_config()).expect("attaches");
    let before = target.model().forward(ids(&device));
    let err = target.load_adapter(dir.path(), "other").expect_err("the shapes do not fit");
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("layers.0.q_proj"), "names the module: {err}");
    assert_eq!(target.adapter_names(), vec!["default".to_string()]);
    assert_eq!(max_diff(target.model().forward(ids(&device)), before), 0.0);

    let missing = PeftModel::from_pretrained(TinyNet::new(&device), dir.path().join("nope")).expect_err("no folder");
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[test]
fn merge_unmerge_and_unload() {
    let device = device();
    let base = TinyNet::new(&device);
    let base_out = base.forward(ids(&device));
    let mut peft = get_peft_model(base, random_config()).expect("attaches");
    let adapted = peft.model().forward(ids(&device));
    peft.merge_adapter().expect("merges");
    assert!(max_diff(peft.model().forward(ids(&device)), adapted.clone()) < 1e-5);
    peft.unmerge_adapters().expect("unmerges");
    assert!(max_diff(peft.model().forward(ids(&device)), adapted.clone()) < 1e-5);
    let merged = peft.clone().merge_and_unload().expect("merges");
    assert!(max_diff(merged.forward(ids(&device)), adapted) < 1e-5);
    assert_eq!(merged.num_params(), TinyNet::new(&device).num_params(), "no adapter left");
    assert!(max_diff(peft.unload().forward(ids(&device)), base_out) < 1e-6);
}

#[test]
fn several_adapters_and_mixed_batches() {
    let device = device();
    let mut peft = get_peft_model(TinyNet::new(&device), random_config()).expect("attaches");
    let other = LoraConfig::new(3).with_target_modules(["up", "embed"]).with_init_lora_weights(InitLoraWeights::Random);
    peft.add_adapter("other", other).expect("second adapter");
    assert_eq!(peft.active_adapters(), ["other".to_string()]);
    let out_other = peft.model().forward(ids(&device));
    peft.set_adapter("default").expect("switch");
    let out_default = peft.model().forward(ids(&device));
    let out_base = peft.with_adapters_disabled(|m| m.forward(ids(&device)));

    let mixed = peft.with_batch_adapters(&["other", peft::BASE_ONLY], |m| m.forward(ids(&device))).expect("mixed");
    let row = |t: &Tensor<3>, i: usize| t.clone().narrow(0, i, 1);
    assert!(max_diff(row(&mixed, 0), row(&out_other, 0)) < 1e-5);
    assert!(max_diff(row(&mixed, 1), row(&out_base, 1)) < 1e-5);
    let mixed = peft.with_batch_adapters(&["default", "other"], |m| m.forward(ids(&device))).expect("mixed");
    assert!(max_diff(row(&mixed, 0), row(&out_default, 0)) < 1e-5);
    assert!(max_diff(row(&mixed, 1), row(&out_other, 1)) < 1e-5);

    let dir = tempfile::tempdir().expect("temp dir");
    peft.save_pretrained(dir.path()).expect("saves");
    assert!(dir.path().join("other/adapter_model.safetensors").is_file(), "extra adapters in subfolders");

    peft.delete_adapter("other").expect("deletes");
    assert_eq!(peft.adapter_names(), vec!["default".to_string()]);
    let err = peft.set_adapter("other").expect_err("gone");
    assert!(matches!(err, Error::UnknownAdapter { .. }), "{err}");
}

#[test]
fn bad_configs_are_typed_errors() {
    let device = device();
    let err = get_peft_model(TinyNet::new(&device), LoraConfig::new(2).with_target_modules(["qproj"])).expect_err("no match");
    match &err {
        Error::TargetModulesNotFound { closest, .. } => assert_eq!(closest.first().map(String::as_str), Some("q_proj")),
        other => panic!("unexpected {other}"),
    }
    let err = get_peft_model(TinyNet::new(&device), LoraConfig::new(0).with_target_modules(["q_proj"])).expect_err("r = 0");
    assert!(err.to_string().contains("`r`"), "{err}");
    let mut peft = get_peft_model(TinyNet::new(&device), config()).expect("attaches");
    let err = peft.add_adapter("default", config()).expect_err("taken");
    assert!(matches!(err, Error::InvalidAdapterName { .. }), "{err}");
    let err = peft.add_adapter(peft::BASE_ONLY, config()).expect_err("reserved");
    assert!(err.to_string().contains("reserved"), "{err}");
    let err = peft.add_adapter("x", config().with_modules_to_save(["missing_head"])).expect_err("no module");
    assert!(matches!(err, Error::ModuleToSaveNotFound { .. }), "{err}");
    assert_eq!(peft.adapter_names(), vec!["default".to_string()], "nothing half-attached");
}

#[test]
fn all_linear_skips_the_head_and_layers_to_transform_filters() {
    let device = device();
    let peft = get_peft_model(TinyNet::new(&device), LoraConfig::new(2).with_target_modules("all-linear")).expect("ok");
    let targeted = peft.targeted_modules("default").expect("default");
    assert_eq!(targeted.len(), 8);
    assert!(!targeted.contains(&"head".to_string()));
    let cfg = LoraConfig::new(2).with_target_modules(["q_proj", "up"]).with_layers_to_transform([1]);
    let peft = get_peft_model(TinyNet::new(&device), cfg).expect("ok");
    assert_eq!(peft.targeted_modules("default").expect("default"), vec!["layers.1.q_proj".to_string(), "layers.1.up".to_string()]);
}

#[test]
fn modules_to_save_trains_a_copy_and_round_trips() {
    let device = device();
    let cfg = config().with_modules_to_save(["head"]);
    let peft = get_peft_model(TinyNet::new(&device), cfg).expect("attaches");
    let (trainable, _) = peft.trainable_parameters();
    assert_eq!(trainable, 4 * 32 + 8 * 3 + 3, "LoRA plus the head copy");
    let dir = tempfile::tempdir().expect("temp dir");
    peft.save_pretrained(dir.path()).expect("saves");
    let loaded = PeftModel::from_pretrained(TinyNet::new(&device), dir.path()).expect("loads");
    assert!(max_diff(loaded.model().forward(ids(&device)), peft.model().forward(ids(&device))) < 1e-6);
}

#[test]
fn weighted_combinations_reproduce_the_summed_updates() {
    let device = device();
    let mut peft = get_peft_model(TinyNet::new(&device), random_config()).expect("attaches");
    peft.add_adapter("b", random_config().with_lora_alpha(8.0)).expect("second");
    peft.set_adapters(&["default", "b"]).expect("both");
    let both = peft.model().forward(ids(&device));

    // `cat` keeps every update exactly: weights 1 and 1 equal both adapters active at once.
    peft.add_weighted_adapter(&[("default", 1.0), ("b", 1.0)], "cat", peft::Combination::Cat).expect("cat");
    peft.set_adapter("cat").expect("activate");
    assert!(max_diff(peft.model().forward(ids(&device)), both.clone()) < 1e-5);
    // `svd` at full rank (2 + 2) is the same update.
    peft.add_weighted_adapter(&[("default", 1.0), ("b", 1.0)], "svd", peft::Combination::Svd { rank: 4 }).expect("svd");
    peft.set_adapter("svd").expect("activate");
    assert!(max_diff(peft.model().forward(ids(&device)), both) < 1e-4);
    let err = peft.add_weighted_adapter(&[("nope", 1.0)], "x", peft::Combination::Linear).expect_err("unknown");
    assert!(matches!(err, Error::UnknownAdapter { .. }), "{err}");
}
