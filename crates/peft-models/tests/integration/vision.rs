//! ViT and SegFormer: outputs against transformers' (fixtures made by `fixtures/gen_vision.py`),
//! module paths, legacy checkpoint keys, image-size errors and bilinear upsampling.

use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{AdapterSites, Error, SiteKind};
use peft_io::tensors::{TensorMap, read_safetensors};
use peft_models::segformer::{SegformerForImageClassification, SegformerForSemanticSegmentation, SegformerModel, resize_bilinear};
use peft_models::vit::{ViTForImageClassification, ViTModel};
use crate::common::fixtures;

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

/// How far from the Python reference outputs may lie on the run's backend (one table:
/// `Backend::tolerance`, per backend and dtype).
static TOLERANCE: std::sync::LazyLock<f32> = std::sync::LazyLock::new(|| peft_core::backend::tolerance(burn::tensor::DType::F32));

#[test]
fn vit_image_classification_matches_transformers() {
    let device = Device::default();
    let model = ViTForImageClassification::from_pretrained(fixtures().join("models/vit"), &device).expect("loads");
    let (expected, pixels) = case("vit_qv", &device);
    let diff = max_diff(model.forward(pixels).expect("forward"), &expected["base"]);
    assert!(diff < *TOLERANCE, "logits differ by {diff}");
}

#[test]
fn vit_features_and_pooler_match_transformers() {
    let device = Device::default();
    let model = ViTModel::from_pretrained(fixtures().join("models/vit_model"), &device).expect("loads");
    assert!(model.pooler.is_some(), "the bare ViTModel checkpoint has a pooler");
    let (expected, pixels) = case("vit_features", &device);
    let hidden = model.forward(pixels).expect("forward");
    assert!(max_diff(hidden.clone(), &expected["base"]) < *TOLERANCE, "last_hidden_state");
    let pooled = model.pooled_output(hidden).expect("pooler");
    assert!(max_diff(pooled, &expected["pooler_base"]) < *TOLERANCE, "pooler_output");
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

#[test]
fn segformer_semantic_segmentation_matches_transformers() {
    let device = Device::default();
    let model = SegformerForSemanticSegmentation::from_pretrained(fixtures().join("models/segformer"), &device).expect("loads");
    let (expected, pixels) = case("segformer_qv", &device);
    let logits = model.forward(pixels);
    assert_eq!(logits.dims(), [2, 3, 8, 8], "a quarter of 32x32");
    let diff = max_diff(logits, &expected["base"]);
    assert!(diff < *TOLERANCE, "logits differ by {diff}");
}

#[test]
fn segformer_loss_upsamples_and_ignores_255() {
    let device = Device::default();
    let model = SegformerForSemanticSegmentation::from_pretrained(fixtures().join("models/segformer"), &device).expect("loads");
    let (expected, pixels) = case("segformer_qv", &device);
    let labels = Tensor::<3, Int>::from_data(expected["seg_labels"].clone(), &device);
    let (_, loss) = model.forward_with_loss(pixels, labels).expect("loss");
    let diff = max_diff(loss, &expected["seg_loss_base"]);
    assert!(diff < *TOLERANCE, "loss differs by {diff}");
}

#[test]
fn segformer_batch_norm_uses_the_checkpoint_running_stats() {
    let device = Device::default();
    let model = SegformerForSemanticSegmentation::from_pretrained(fixtures().join("models/segformer"), &device).expect("loads");
    let file = read_safetensors(&fixtures().join("models/segformer/model.safetensors")).expect("weights");
    let var = Tensor::<1>::from_data(file["decode_head.batch_norm.running_var"].clone(), &device);
    assert_eq!(max_diff(model.decode_head.batch_norm.base_layer.running_var.clone(), &var.into_data()), 0.0);
    // Buffers are not parameters: the count is the Python library's `num_parameters()`.
    let buffers: usize = file.iter().filter(|(k, _)| k.contains("running_") || k.contains("num_batches")).map(|(_, v)| v.num_elements()).sum();
    let all: usize = file.values().map(|v| v.num_elements()).sum();
    assert_eq!(burn::module::Module::num_params(&model), all - buffers);
}

#[test]
fn segformer_image_classification_matches_transformers() {
    let device = Device::default();
    let model = SegformerForImageClassification::from_pretrained(fixtures().join("models/segformer_cls"), &device).expect("loads");
    let (expected, pixels) = case("segformer_cls", &device);
    let diff = max_diff(model.forward(pixels), &expected["base"]);
    assert!(diff < *TOLERANCE, "logits differ by {diff}");
}

#[test]
fn segformer_sites_use_transformers_5_paths() {
    let device = Device::default();
    let model = SegformerForSemanticSegmentation::from_pretrained(fixtures().join("models/segformer"), &device).expect("loads");
    let sites = model.site_paths();
    let paths: Vec<&str> = sites.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths[0], "segformer.stages.0.patch_embeddings.proj");
    assert_eq!(paths[1], "segformer.stages.0.blocks.0.attention.q_proj");
    assert_eq!(paths[5], "segformer.stages.0.blocks.0.attention.sequence_reduction.sequence_reduction");
    assert!(paths.contains(&"segformer.stages.3.blocks.0.mlp.dwconv.dwconv"));
    assert!(!paths.contains(&"segformer.stages.3.blocks.0.attention.sequence_reduction.sequence_reduction"), "sr_ratio 1");
    assert_eq!(&paths[paths.len() - 3..], ["decode_head.linear_fuse", "decode_head.batch_norm", "decode_head.classifier"]);
    assert_eq!(sites.last().map(|s| s.1), Some(SiteKind::Conv2d));
    // A bare encoder from the same folder reads the `segformer.*` keys.
    let encoder = SegformerModel::from_pretrained(fixtures().join("models/segformer"), &device).expect("encoder");
    assert_eq!(encoder.site_paths().len(), sites.len() - 7);
}

/// Burn's bilinear resize with `align_corners = false` against values worked out by hand with
/// PyTorch's half-pixel rule: output pixel `i` samples input coordinate `(i + 0.5) * in / out - 0.5`,
/// clamped at 0.
#[test]
fn bilinear_resize_uses_half_pixel_centres() {
    let device = Device::default();
    let x = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 1.0, 2.0, 3.0], [1, 1, 2, 2]), &device);
    let y: Vec<f32> = resize_bilinear(x, [4, 4]).into_data().try_to_vec::<f32>().expect("f32");
    // Along one axis, 2 -> 4 samples at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    let axis = [0.0f32, 0.25, 0.75, 1.0];
    for (r, wr) in axis.iter().enumerate() {
        for (c, wc) in axis.iter().enumerate() {
            let expected = 2.0 * wr + wc;
            assert!((y[r * 4 + c] - expected).abs() < 1e-6, "({r}, {c}): {} vs {expected}", y[r * 4 + c]);
        }
    }
}
