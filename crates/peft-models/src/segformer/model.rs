//! The MiT encoder (`SegformerModel`: stages of overlapping patch embeddings and layers) and
//! `SegformerForImageClassification`.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedConv2d, AdaptedLinear, AdapterSites, Result, SiteMut};
use std::path::Path;

use super::config::SegformerConfig;
use super::encoder::{SegformerLayer, to_sequence};
use crate::layers::{LayerNorm, cross_entropy};

/// An overlapping patch embedding (`patch_embeddings`): a strided convolution padded by
/// `kernel / 2`, then LayerNorm over channels.
#[derive(Module, Debug)]
pub struct SegformerOverlapPatchEmbeddings {
    /// `c_in -> c`, kernel `patch_size`, stride `stride`, padding `patch_size / 2`.
    pub proj: AdaptedConv2d,
    /// Normalises each token.
    pub layer_norm: LayerNorm,
}

impl SegformerOverlapPatchEmbeddings {
    /// Tokens of the downsampled grid, with the grid's height and width.
    ///
    /// # Shapes
    /// - `x`: `[batch, c_in, height, width]`
    /// - output: `[batch, h * w, c]` with `h = (height + 2 * (k / 2) - k) / stride + 1`, `w` alike
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<3>, usize, usize) {
        let embedded = self.proj.forward(x);
        let [_, _, height, width] = embedded.dims();
        (self.layer_norm.forward(to_sequence(embedded)), height, width)
    }
}

/// One encoder stage (`stages.{s}`): patch embedding, layers, LayerNorm.
#[derive(Module, Debug)]
pub struct SegformerStage {
    /// Downsamples and embeds.
    pub patch_embeddings: SegformerOverlapPatchEmbeddings,
    /// The stage's layers.
    pub blocks: Vec<SegformerLayer>,
    /// The stage's final LayerNorm.
    pub layer_norm: LayerNorm,
}

impl SegformerStage {
    /// A new stage `s` of `config`.
    pub fn new(config: &SegformerConfig, s: usize, device: &Device) -> Self {
        let c_in = if s == 0 { config.num_channels } else { config.hidden_sizes[s - 1] };
        let (c, k) = (config.hidden_sizes[s], config.patch_sizes[s]);
        SegformerStage {
            patch_embeddings: SegformerOverlapPatchEmbeddings {
                proj: super::conv2d(c_in, c, [k, k], config.strides[s], k / 2, 1, true, config, device),
                layer_norm: super::layer_norm(c, device),
            },
            blocks: (0..config.depths[s]).map(|_| SegformerLayer::new(config, s, device)).collect(),
            layer_norm: super::layer_norm(c, device),
        }
    }

    /// The stage's feature map.
    ///
    /// # Shapes
    /// - `x`: `[batch, c_in, height, width]`
    /// - output: `[batch, c, h, w]` (the patch embedding's grid)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // The pixels in the model's float type (f16/bf16 when its weights were cast).
        let x = x.cast(self.patch_embeddings.proj.weight_dtype());
        let (tokens, height, width) = self.patch_embeddings.forward(x);
        let tokens = self.blocks.iter().fold(tokens, |t, block| block.forward(t, height, width));
        super::encoder::to_image(self.layer_norm.forward(tokens), height, width)
    }
}

/// The hierarchical MiT encoder (transformers' `SegformerModel`).
///
/// Module paths are transformers 5's (`stages.0.blocks.0.attention.q_proj`); checkpoints with
/// the legacy keys (`encoder.block.0.0.attention.self.query`) are renamed on load.
#[derive(Module, Debug)]
pub struct SegformerModel {
    /// The stages, each halving (or quartering, for the first) the resolution.
    pub stages: Vec<SegformerStage>,
}

impl SegformerModel {
    /// A new encoder, weights drawn as transformers initialises them.
    pub fn new(config: &SegformerConfig, device: &Device) -> Self {
        SegformerModel { stages: (0..config.num_encoder_blocks).map(|s| SegformerStage::new(config, s, device)).collect() }
    }

    /// Loads `config.json` and `model.safetensors` from a transformers folder holding a bare
    /// `SegformerModel` or a task model (keys under `segformer.`; its head is ignored).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = SegformerConfig::from_file(dir)?;
        super::load::load(Self::new(&config, device), dir, &[])
    }

    /// Every stage's feature map (transformers' `hidden_states`); the last is `last_hidden_state`.
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, num_channels, height, width]`
    /// - output `s`: `[batch, hidden_sizes[s], h_s, w_s]` (`h_0 = height / 4` for mit strides)
    pub fn forward(&self, pixel_values: Tensor<4>) -> Vec<Tensor<4>> {
        let mut out: Vec<Tensor<4>> = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            let input = out.last().cloned().unwrap_or_else(|| pixel_values.clone());
            out.push(stage.forward(input));
        }
        out
    }

    /// The last stage's feature map only.
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, num_channels, height, width]`
    /// - output: `[batch, hidden_sizes[-1], h, w]`
    pub fn last_hidden_state(&self, pixel_values: Tensor<4>) -> Tensor<4> {
        self.stages.iter().fold(pixel_values, |x, stage| stage.forward(x))
    }

    /// Calls `f` for every site with `prefix` before its path (`""` or `"segformer."`).
    pub(crate) fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        for (s, stage) in self.stages.iter_mut().enumerate() {
            let at = format!("{prefix}stages.{s}");
            f(&format!("{at}.patch_embeddings.proj"), SiteMut::Conv2d(&mut stage.patch_embeddings.proj));
            for (b, block) in stage.blocks.iter_mut().enumerate() {
                let at = format!("{at}.blocks.{b}");
                let attn = &mut block.attention;
                f(&format!("{at}.attention.q_proj"), SiteMut::Linear(&mut attn.q_proj));
                f(&format!("{at}.attention.k_proj"), SiteMut::Linear(&mut attn.k_proj));
                f(&format!("{at}.attention.v_proj"), SiteMut::Linear(&mut attn.v_proj));
                f(&format!("{at}.attention.o_proj"), SiteMut::Linear(&mut attn.o_proj));
                if let Some(sr) = &mut attn.sequence_reduction {
                    let path = format!("{at}.attention.sequence_reduction.sequence_reduction");
                    f(&path, SiteMut::Conv2d(&mut sr.sequence_reduction));
                }
                f(&format!("{at}.mlp.fc1"), SiteMut::Linear(&mut block.mlp.fc1));
                f(&format!("{at}.mlp.dwconv.dwconv"), SiteMut::Conv2d(&mut block.mlp.dwconv.dwconv));
                f(&format!("{at}.mlp.fc2"), SiteMut::Linear(&mut block.mlp.fc2));
            }
        }
    }
}

/// The Python library's LoRA defaults have no entry for SegFormer: `target_modules` must be given.
impl AdapterSites for SegformerModel {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.visit_sites_prefixed("", f);
    }

    fn legacy_path(&self, path: &str) -> Option<String> {
        super::load::legacy_path(path)
    }

    fn legacy_target_names(&self, name: &str) -> Vec<String> {
        super::load::legacy_target_names(name)
    }
}

/// SegFormer with a linear classifier on the average of the last feature map
/// (transformers' `SegformerForImageClassification`).
#[derive(Module, Debug)]
pub struct SegformerForImageClassification {
    /// The encoder, at paths `segformer.*`.
    pub segformer: SegformerModel,
    /// `hidden_sizes[-1] -> num_labels`.
    pub classifier: AdaptedLinear,
}

impl SegformerForImageClassification {
    /// A new model for `config` with `config.num_labels` outputs.
    pub fn new(config: &SegformerConfig, device: &Device) -> Self {
        let width = config.hidden_sizes.last().copied().unwrap_or_default();
        SegformerForImageClassification {
            segformer: SegformerModel::new(config, device),
            classifier: super::linear(width, config.num_labels, config, device),
        }
    }

    /// Loads a transformers `SegformerForImageClassification` folder; with `new_head`, a file
    /// without classifier weights is accepted and the classifier keeps its initialisation.
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        let dir = dir.as_ref();
        let config = SegformerConfig::from_file(dir)?;
        let optional: &[&str] = if new_head { &["classifier.weight", "classifier.bias"] } else { &[] };
        super::load::load(Self::new(&config, device), dir, optional)
    }

    /// Like [`SegformerForImageClassification::from_pretrained_with`] with the head required.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// Class logits: `classifier(mean over positions of the last feature map)`.
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, num_channels, height, width]`
    /// - output: `[batch, num_labels]`
    pub fn forward(&self, pixel_values: Tensor<4>) -> Tensor<2> {
        let last = self.segformer.last_hidden_state(pixel_values);
        let [batch, channels, _, _] = last.dims();
        let pooled = last.flatten::<3>(2, 3).mean_dim(2).reshape([batch, channels]);
        self.classifier.forward(pooled)
    }

    /// Logits and the mean cross-entropy against class `labels`.
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, num_channels, height, width]`
    /// - `labels`: `[batch]`
    /// - output: `([batch, num_labels], [1])`
    pub fn forward_with_loss(&self, pixel_values: Tensor<4>, labels: Tensor<1, Int>) -> (Tensor<2>, Tensor<1>) {
        let logits = self.forward(pixel_values);
        (logits.clone(), cross_entropy(logits, labels))
    }
}

impl AdapterSites for SegformerForImageClassification {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.segformer.visit_sites_prefixed("segformer.", f);
        f("classifier", SiteMut::Linear(&mut self.classifier));
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["classifier".into()]
    }

    fn legacy_path(&self, path: &str) -> Option<String> {
        super::load::legacy_path(path)
    }

    fn legacy_target_names(&self, name: &str) -> Vec<String> {
        super::load::legacy_target_names(name)
    }
}
