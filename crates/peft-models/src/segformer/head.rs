//! The all-MLP decode head (`decode_head`) and `SegformerForSemanticSegmentation`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Int, Tensor};
use peft_core::adapted::BatchNorm2d;
use peft_core::{AdaptedBatchNorm2d, AdaptedConv2d, AdaptedLinear, AdapterSites, Error, Result, SiteMut};
use std::path::Path;

use super::config::SegformerConfig;
use super::encoder::{to_image, to_sequence};
use super::model::SegformerModel;

/// A per-stage projection (`linear_projections.{s}`) to `decoder_hidden_size`.
#[derive(Module, Debug)]
pub struct SegformerMlp {
    /// `hidden_sizes[s] -> decoder_hidden_size`.
    pub proj: AdaptedLinear,
}

/// Bilinear resize with half-pixel centres (PyTorch's `align_corners=False`); the same size is
/// returned as is.
///
/// # Shapes
/// - `x`: `[batch, channels, h, w]`
/// - output: `[batch, channels, size[0], size[1]]`
pub fn resize_bilinear(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if [h, w] == size {
        return x;
    }
    let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false).with_output_size(size);
    interpolate(x, options)
}

/// The all-MLP decode head: every stage projected to one width and upsampled to stage 0's grid,
/// concatenated (last stage first), fused by a 1x1 convolution, batch-normed, ReLU, classified.
#[derive(Module, Debug)]
pub struct SegformerDecodeHead {
    /// One projection per stage.
    pub linear_projections: Vec<SegformerMlp>,
    /// `stages * decoder_hidden_size -> decoder_hidden_size`, 1x1, no bias.
    pub linear_fuse: AdaptedConv2d,
    /// Inference-mode batch norm (running statistics from the checkpoint).
    pub batch_norm: AdaptedBatchNorm2d,
    /// Dropout before the classifier (training only).
    pub dropout: Dropout,
    /// `decoder_hidden_size -> num_labels`, 1x1.
    pub classifier: AdaptedConv2d,
}

impl SegformerDecodeHead {
    /// A new head for `config`.
    pub fn new(config: &SegformerConfig, device: &Device) -> Self {
        let d = config.decoder_hidden_size;
        let fused = d * config.num_encoder_blocks;
        SegformerDecodeHead {
            linear_projections: config.hidden_sizes.iter().map(|&c| SegformerMlp { proj: super::linear(c, d, config, device) }).collect(),
            linear_fuse: super::conv2d(fused, d, [1, 1], 1, 0, 1, false, config, device),
            batch_norm: AdaptedBatchNorm2d::from_batch_norm(BatchNorm2d::new(d, device)),
            dropout: DropoutConfig::new(config.classifier_dropout_prob).init(),
            classifier: super::conv2d(d, config.num_labels, [1, 1], 1, 0, 1, true, config, device),
        }
    }

    /// Logits at stage 0's resolution.
    ///
    /// # Shapes
    /// - `features[s]`: `[batch, hidden_sizes[s], h_s, w_s]`
    /// - output: `[batch, num_labels, h_0, w_0]`
    pub fn forward(&self, features: Vec<Tensor<4>>) -> Tensor<4> {
        let size = features.first().map(|f| [f.dims()[2], f.dims()[3]]).unwrap_or_default();
        let mut projected: Vec<Tensor<4>> = features
            .into_iter()
            .zip(&self.linear_projections)
            .map(|(f, mlp)| {
                let [_, _, h, w] = f.dims();
                resize_bilinear(to_image(mlp.proj.forward(to_sequence(f)), h, w), size)
            })
            .collect();
        // transformers concatenates the deepest stage first.
        projected.reverse();
        let fused = self.linear_fuse.forward(Tensor::cat(projected, 1));
        let hidden = self.dropout.forward(relu(self.batch_norm.forward(fused)));
        self.classifier.forward(hidden)
    }
}

/// SegFormer with the all-MLP decode head (transformers' `SegformerForSemanticSegmentation`).
#[derive(Module, Debug)]
pub struct SegformerForSemanticSegmentation {
    /// The encoder, at paths `segformer.*`.
    pub segformer: SegformerModel,
    /// The decode head, at paths `decode_head.*`.
    pub decode_head: SegformerDecodeHead,
    /// Label left out of the loss (`semantic_loss_ignore_index`).
    pub ignore_index: i64,
}

impl SegformerForSemanticSegmentation {
    /// A new model for `config` with `config.num_labels` classes.
    pub fn new(config: &SegformerConfig, device: &Device) -> Self {
        SegformerForSemanticSegmentation {
            segformer: SegformerModel::new(config, device),
            decode_head: SegformerDecodeHead::new(config, device),
            ignore_index: config.semantic_loss_ignore_index,
        }
    }

    /// Loads a transformers `SegformerForSemanticSegmentation` folder (with its decode head and
    /// the batch norm's running statistics).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = SegformerConfig::from_file(dir)?;
        super::load::load_semantic(Self::new(&config, device), dir)
    }

    /// Per-pixel class logits at a quarter of the input resolution (stage 0's grid), as
    /// transformers returns them.
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, num_channels, height, width]`
    /// - output: `[batch, num_labels, h_0, w_0]` (`height / 4` for mit strides)
    pub fn forward(&self, pixel_values: Tensor<4>) -> Tensor<4> {
        self.decode_head.forward(self.segformer.forward(pixel_values))
    }

    /// Logits and the loss against a label map: the logits are upsampled bilinearly to the
    /// labels' size and scored by the mean cross-entropy over pixels whose label is not
    /// `ignore_index` (transformers' loss for `num_labels > 1`).
    ///
    /// Fails with [`Error::Unsupported`] for a single-label head (transformers' BCE variant).
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, num_channels, height, width]`
    /// - `labels`: `[batch, height', width']`
    /// - output: `([batch, num_labels, h_0, w_0], [1])`
    pub fn forward_with_loss(&self, pixel_values: Tensor<4>, labels: Tensor<3, Int>) -> Result<(Tensor<4>, Tensor<1>)> {
        let logits = self.forward(pixel_values);
        let num_labels = logits.dims()[1];
        if num_labels < 2 {
            return Err(Error::Unsupported { what: "a segmentation loss with num_labels = 1".into(), supported: "num_labels >= 2".into() });
        }
        let loss = pixel_cross_entropy(resize_bilinear(logits.clone(), [labels.dims()[1], labels.dims()[2]]), labels, self.ignore_index);
        Ok((logits, loss))
    }
}

/// Mean cross-entropy over the pixels whose label is not `ignore_index`.
///
/// # Shapes
/// - `logits`: `[batch, classes, h, w]`
/// - `labels`: `[batch, h, w]`
/// - output: `[1]`
pub fn pixel_cross_entropy(logits: Tensor<4>, labels: Tensor<3, Int>, ignore_index: i64) -> Tensor<1> {
    let [batch, classes, h, w] = logits.dims();
    let n = batch * h * w;
    let logits = logits.permute([0, 2, 3, 1]).reshape([n, classes]);
    let labels = labels.reshape([n]);
    let kept = labels.clone().not_equal_elem(ignore_index);
    let index = labels.mask_fill(kept.clone().bool_not(), 0).reshape([n, 1]);
    // In f32 whatever the logits' type, as the other losses.
    let picked = log_softmax(logits.cast(burn::tensor::FloatDType::F32), 1).gather(1, index).reshape([n]);
    let kept = kept.float();
    picked.mul(kept.clone()).sum().neg().div(kept.sum())
}

impl AdapterSites for SegformerForSemanticSegmentation {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.segformer.visit_sites_prefixed("segformer.", f);
        let head = &mut self.decode_head;
        for (i, mlp) in head.linear_projections.iter_mut().enumerate() {
            f(&format!("decode_head.linear_projections.{i}.proj"), SiteMut::Linear(&mut mlp.proj));
        }
        f("decode_head.linear_fuse", SiteMut::Conv2d(&mut head.linear_fuse));
        f("decode_head.batch_norm", SiteMut::BatchNorm2d(&mut head.batch_norm));
        f("decode_head.classifier", SiteMut::Conv2d(&mut head.classifier));
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["decode_head.classifier".into()]
    }

    fn legacy_path(&self, path: &str) -> Option<String> {
        super::load::legacy_path(path)
    }

    fn legacy_target_names(&self, name: &str) -> Vec<String> {
        super::load::legacy_target_names(name)
    }
}
