//! ViT and SegFormer with LoRA adapters written by the Python library (`fixtures/cases/vit_*`,
//! `segformer_*`), on `pixel_values`.

mod common;

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
    assert!(diff < common::cases::TOL, "pooler differs by {diff}");
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
