//! ViT and SegFormer with LoRA adapters written by the Python library (`fixtures/cases/vit_*`,
//! `segformer_*`), on `pixel_values`.

use crate::common;

use burn::tensor::{Int, Tensor, TensorData};
use common::cases::{assert_loss_and_gradients, check_pixel_case};
use common::fixtures::{Case, root};
use peft::PeftModel;
use peft::models::segformer::{SegformerForImageClassification, SegformerForSemanticSegmentation};
use peft::models::vit::{ViTForImageClassification, ViTModel};

#[test]
fn vit_image_classification() {
    let device = common::device();
    let load = || ViTForImageClassification::from_pretrained(root().join("models/vit"), &device).expect("vit");
    check_pixel_case("vit_qv", load, |m, x| m.forward(x).expect("forward"));
}

#[test]
fn vit_feature_extraction() {
    let device = common::device();
    let load = || ViTModel::from_pretrained(root().join("models/vit_model"), &device).expect("vit");
    check_pixel_case("vit_features", load, |m, x| m.forward(x).expect("forward"));
}

#[test]
fn vit_pooler_with_the_adapter() {
    let device = common::device();
    let case = Case::load("vit_features");
    let base = ViTModel::from_pretrained(root().join("models/vit_model"), &device).expect("vit");
    let model = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    let hidden = model.model().forward(case.floats("pixel_values", &device)).expect("forward");
    let pooled = model.model().pooled_output(hidden).expect("pooler");
    let diff = common::fixtures::max_abs_diff(pooled.into_data(), &case.expected["pooler_adapted"]);
    assert!(diff < *common::cases::TOL, "pooler differs by {diff}");
}

#[test]
fn vit_gradients_match_python() {
    let device = common::device().autodiff();
    let case = Case::load("vit_qv");
    let base = ViTForImageClassification::from_pretrained(root().join("models/vit"), &device).expect("vit");
    let mut model = PeftModel::from_pretrained(base, case.adapter()).expect("loads");
    model.set_trainable("default", true).expect("trainable");
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let (_, loss) = model.model().forward_with_loss(case.floats("pixel_values", &device), labels).expect("forward");
    let compared = assert_loss_and_gradients(&case, &model, loss);
    assert_eq!(compared, 10, "LoRA factors of 2 layers x q/v and the classifier copy");
}

#[test]
fn segformer_image_classification() {
    let device = common::device();
    let load = || SegformerForImageClassification::from_pretrained(root().join("models/segformer_cls"), &device).expect("segformer");
    check_pixel_case("segformer_cls", load, |m, x| m.forward(x));
}

#[test]
fn segformer_semantic_segmentation() {
    let device = common::device();
    let load = || SegformerForSemanticSegmentation::from_pretrained(root().join("models/segformer"), &device).expect("segformer");
    check_pixel_case("segformer_qv", load, |m, x| m.forward(x));
}

#[test]
fn lora_on_batch_norm_is_refused_as_in_python() {
    let device = common::device();
    let base = SegformerForSemanticSegmentation::from_pretrained(root().join("models/segformer"), &device).expect("segformer");
    let config = peft::LoraConfig::new(2).with_target_modules(["batch_norm"]);
    match peft::get_peft_model(base, config) {
        Err(peft::Error::Unsupported { what, .. }) => assert!(what.contains("decode_head.batch_norm"), "{what}"),
        other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
    }
}

/// Adapters saved before transformers 5 renamed ViT's and SegFormer's modules
/// (`adapter_transformers4/`: the same tensors under `vit.encoder.layer.N.attention.attention.query`
/// and `target_modules` `["query", "value"]`) load onto today's modules with the new-name
/// adapter's outputs.
#[test]
fn adapters_with_transformers_4_names_load_as_today_s() {
    let device = common::device();
    let vit = || ViTForImageClassification::from_pretrained(root().join("models/vit"), &device).expect("vit");
    let case = Case::load("vit_qv");
    let x = case.floats("pixel_values", &device);
    let old = PeftModel::from_pretrained(vit(), root().join("cases/vit_qv/adapter_transformers4")).expect("old names load");
    let new = PeftModel::from_pretrained(vit(), case.adapter()).expect("new names load");
    assert_eq!(old.targeted_modules("default").expect("targets"), new.targeted_modules("default").expect("targets"));
    let (a, b) = (old.model().forward(x.clone()).expect("forward"), new.model().forward(x).expect("forward"));
    assert_eq!(a.into_data().try_to_vec::<f32>().expect("f32"), b.into_data().try_to_vec::<f32>().expect("f32"));

    let seg = || SegformerForSemanticSegmentation::from_pretrained(root().join("models/segformer"), &device).expect("segformer");
    let case = Case::load("segformer_qv");
    let x = case.floats("pixel_values", &device);
    let old = PeftModel::from_pretrained(seg(), root().join("cases/segformer_qv/adapter_transformers4")).expect("old names load");
    let new = PeftModel::from_pretrained(seg(), case.adapter()).expect("new names load");
    assert_eq!(old.targeted_modules("default").expect("targets"), new.targeted_modules("default").expect("targets"));
    let (a, b) = (old.model().forward(x.clone()), new.model().forward(x));
    assert_eq!(a.into_data().try_to_vec::<f32>().expect("f32"), b.into_data().try_to_vec::<f32>().expect("f32"));
}

/// The PEFT guides' `LoraConfig(target_modules=["query", "value"])` on ViT adapts today's
/// `q_proj` / `v_proj`; a name that is neither today's nor an older one still fails.
#[test]
fn the_guides_query_value_targets_adapt_q_proj_and_v_proj() {
    let device = common::device();
    let vit = || ViTForImageClassification::from_pretrained(root().join("models/vit"), &device).expect("vit");
    let old = peft::get_peft_model(vit(), peft::LoraConfig::new(4).with_target_modules(["query", "value"])).expect("old names");
    let new = peft::get_peft_model(vit(), peft::LoraConfig::new(4).with_target_modules(["q_proj", "v_proj"])).expect("new names");
    let targets = old.targeted_modules("default").expect("targets");
    assert_eq!(targets, new.targeted_modules("default").expect("targets"));
    assert_eq!(targets.len(), 4, "{targets:?}");
    let cfg = old.peft_config("default").expect("config");
    let saved = serde_json::to_value(cfg).expect("json");
    assert_eq!(saved["target_modules"], serde_json::json!(["q_proj", "v_proj"]), "the config records today's names");
    let err = peft::get_peft_model(vit(), peft::LoraConfig::new(4).with_target_modules(["querry"])).expect_err("a typo").to_string();
    assert!(err.contains("querry"), "{err}");
}
