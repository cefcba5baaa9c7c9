//! ViT and SegFormer: outputs against transformers' (fixtures made by `fixtures/gen_vision.py`),
//! module paths, legacy checkpoint keys, image-size errors and bilinear upsampling.

use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{AdapterSites, Error, SiteKind};
use peft_io::tensors::{TensorMap, read_safetensors};
use peft_models::vit::{ViTForImageClassification, ViTModel};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// `expected.safetensors` of a case and its `pixel_values` on the device.
fn case(name: &str, device: &Device) -> (TensorMap, Tensor<4>) {
    let expected = read_safetensors(&fixtures().join("cases").join(name).join("expected.safetensors")).expect("fixture");
    let pixels = Tensor::<4>::from_data(expected["pixel_values"].clone(), device);
    (expected, pixels)
}

fn max_diff<const D: usize>(a: Tensor<D>, expected: &TensorData) -> f32 {
    let b = Tensor::<D>::from_data(expected.clone(), &a.device());
    assert_eq!(a.dims().to_vec(), expected.shape().to_vec(), "shape");
    (a - b).abs().max().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32")[0]
}

const TOLERANCE: f32 = 1e-4;

#[test]
fn vit_image_classification_matches_transformers() {
    let device = Device::default();
    let model = ViTForImageClassification::from_pretrained(fixtures().join("models/vit"), &device).expect("loads");
    let (expected, pixels) = case("vit_qv", &device);
    let diff = max_diff(model.forward(pixels).expect("forward"), &expected["base"]);
    assert!(diff < TOLERANCE, "logits differ by {diff}");
}

#[test]
fn vit_features_and_pooler_match_transformers() {
    let device = Device::default();
    let model = ViTModel::from_pretrained(fixtures().join("models/vit_model"), &device).expect("loads");
    assert!(model.pooler.is_some(), "the bare ViTModel checkpoint has a pooler");
    let (expected, pixels) = case("vit_features", &device);
    let hidden = model.forward(pixels).expect("forward");
    assert!(max_diff(hidden.clone(), &expected["base"]) < TOLERANCE, "last_hidden_state");
    let pooled = model.pooled_output(hidden).expect("pooler");
    assert!(max_diff(pooled, &expected["pooler_base"]) < TOLERANCE, "pooler_output");
}

#[test]
fn vit_from_a_classifier_checkpoint_has_no_pooler() {
    let device = Device::default();
    let model = ViTModel::from_pretrained(fixtures().join("models/vit"), &device).expect("loads the vit.* keys");
    assert!(model.pooler.is_none());
}

#[test]
fn vit_sites_use_transformers_5_paths() {
    let model = ViTForImageClassification::from_pretrained(fixtures().join("models/vit"), &Device::default()).expect("loads");
    let sites = model.site_paths();
    assert_eq!(sites[0], ("vit.embeddings.patch_embeddings.projection".to_string(), SiteKind::Conv2d));
    assert_eq!(sites[1].0, "vit.layers.0.attention.q_proj");
    assert_eq!(sites[6].0, "vit.layers.0.mlp.fc2");
    assert_eq!(sites.last().map(|s| s.0.as_str()), Some("classifier"));
    assert_eq!(sites.len(), 1 + 2 * 6 + 1);
    assert!(model.default_target_modules().is_empty(), "PEFT's LoRA mapping has no ViT default");
}

#[test]
fn vit_rejects_another_image_size() {
    let device = Device::default();
    let model = ViTForImageClassification::from_pretrained(fixtures().join("models/vit"), &device).expect("loads");
    let pixels = Tensor::<4>::zeros([1, 3, 24, 32], &device);
    match model.forward(pixels) {
        Err(Error::ShapeMismatch { expected, actual, .. }) => {
            assert_eq!(expected, vec![3, 32, 32]);
            assert_eq!(actual, vec![3, 24, 32]);
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }
}

#[test]
fn vit_loss_is_cross_entropy_of_the_logits() {
    let device = Device::default();
    let model = ViTForImageClassification::from_pretrained(fixtures().join("models/vit"), &device).expect("loads");
    let (_, pixels) = case("vit_qv", &device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let (logits, loss) = model.forward_with_loss(pixels, labels).expect("forward");
    let l: Vec<f32> = logits.into_data().try_to_vec::<f32>().expect("f32");
    let nll = |row: &[f32], k: usize| row.iter().map(|x| x.exp()).sum::<f32>().ln() - row[k];
    let expected = (nll(&l[0..3], 0) + nll(&l[3..6], 2)) / 2.0;
    assert!((loss.into_scalar::<f32>() - expected).abs() < 1e-5);
}
