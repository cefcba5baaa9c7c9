//! `ViTModel` (feature extraction) and `ViTForImageClassification`.

use burn::module::Module;
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedLinear, AdapterSites, Result, SiteMut};
use std::path::Path;

use super::config::ViTConfig;
use super::embeddings::ViTEmbeddings;
use super::layer::ViTLayer;
use crate::layers::{LayerNorm, cross_entropy};

/// The pooler (`pooler`): `tanh(dense(h[:, 0]))`, the CLS vector through a dense layer.
#[derive(Module, Debug)]
pub struct ViTPooler {
    /// `hidden_size -> pooler_output_size`.
    pub dense: AdaptedLinear,
}

impl ViTPooler {
    /// A new pooler for `config`.
    pub fn new(config: &ViTConfig, device: &Device) -> Self {
        ViTPooler { dense: super::linear(config.hidden_size, config.pooler_size(), true, config, device) }
    }

    /// Pools the CLS position.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, hidden]`
    /// - output: `[batch, pooler_output_size]`
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        tanh(self.dense.forward(cls_token(hidden)))
    }
}

/// `h[:, 0, :]`, the CLS position.
fn cls_token(hidden: Tensor<3>) -> Tensor<2> {
    let [batch, _, width] = hidden.dims();
    hidden.narrow(1, 0, 1).reshape([batch, width])
}

/// A ViT encoder for feature extraction (transformers' `ViTModel`).
///
/// Module paths are transformers 5's (`layers.0.attention.q_proj`, `layers.0.mlp.fc1`); weights
/// saved with the legacy keys (`encoder.layer.0.attention.attention.query`) are renamed on load.
#[derive(Module, Debug)]
pub struct ViTModel {
    /// Patch, CLS and position embeddings.
    pub embeddings: ViTEmbeddings,
    /// The encoder layers.
    pub layers: Vec<ViTLayer>,
    /// The final LayerNorm.
    pub layernorm: LayerNorm,
    /// The pooler; `None` where the checkpoint has none (image classifiers).
    pub pooler: Option<ViTPooler>,
}

impl ViTModel {
    /// A new model with a pooler, weights drawn as transformers initialises them.
    pub fn new(config: &ViTConfig, device: &Device) -> Self {
        let mut model = Self::without_pooler(config, device);
        model.pooler = Some(ViTPooler::new(config, device));
        model
    }

    /// A new model with no pooler (`add_pooling_layer=False`, as in `ViTForImageClassification`).
    pub fn without_pooler(config: &ViTConfig, device: &Device) -> Self {
        ViTModel {
            embeddings: ViTEmbeddings::new(config, device),
            layers: (0..config.num_hidden_layers).map(|_| ViTLayer::new(config, device)).collect(),
            layernorm: LayerNorm::new(config.hidden_size, config.layer_norm_eps, device),
            pooler: None,
        }
    }

    /// Loads `config.json` and `model.safetensors` (or shards) from a transformers model folder.
    ///
    /// The folder may hold a bare `ViTModel` or a task model whose keys start with `vit.` (its
    /// head is ignored). The pooler is kept only if the file has it.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = ViTConfig::from_file(dir)?;
        super::load::load_base(dir, &config, device)
    }

    /// The last hidden state (after the final LayerNorm).
    ///
    /// Fails with [`peft_core::Error::ShapeMismatch`] when the image size or channel count is not
    /// the config's.
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, num_channels, height, width]`
    /// - output: `[batch, num_patches + 1, hidden_size]` (CLS first)
    pub fn forward(&self, pixel_values: Tensor<4>) -> Result<Tensor<3>> {
        Ok(self.forward_embeds(self.embeddings.forward(pixel_values)?))
    }

    /// The encoder and final LayerNorm on an embedded sequence (positions already added), for
    /// methods that prepend learned rows to [`ViTEmbeddings::forward`]'s output.
    ///
    /// # Shapes
    /// - `embeddings`: `[batch, seq, hidden_size]`, and the same out.
    pub fn forward_embeds(&self, embeddings: Tensor<3>) -> Tensor<3> {
        let hidden = self.layers.iter().fold(embeddings, |h, layer| layer.forward(h));
        self.layernorm.forward(hidden)
    }

    /// The pooler output of a last hidden state, if this model has a pooler.
    ///
    /// # Shapes
    /// - `last_hidden_state`: `[batch, seq, hidden_size]`
    /// - output: `[batch, pooler_output_size]`
    pub fn pooled_output(&self, last_hidden_state: Tensor<3>) -> Option<Tensor<2>> {
        self.pooler.as_ref().map(|p| p.forward(last_hidden_state))
    }

    /// Calls `f` for every site with `prefix` before its path (`""` or `"vit."`).
    pub(crate) fn visit_sites_prefixed(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        let projection = &mut self.embeddings.patch_embeddings.projection;
        f(&format!("{prefix}embeddings.patch_embeddings.projection"), SiteMut::Conv2d(projection));
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let at = format!("{prefix}layers.{i}");
            let attn = &mut layer.attention;
            f(&format!("{at}.attention.q_proj"), SiteMut::Linear(&mut attn.q_proj));
            f(&format!("{at}.attention.k_proj"), SiteMut::Linear(&mut attn.k_proj));
            f(&format!("{at}.attention.v_proj"), SiteMut::Linear(&mut attn.v_proj));
            f(&format!("{at}.attention.o_proj"), SiteMut::Linear(&mut attn.o_proj));
            f(&format!("{at}.mlp.fc1"), SiteMut::Linear(&mut layer.mlp.fc1));
            f(&format!("{at}.mlp.fc2"), SiteMut::Linear(&mut layer.mlp.fc2));
        }
        if let Some(pooler) = &mut self.pooler {
            f(&format!("{prefix}pooler.dense"), SiteMut::Linear(&mut pooler.dense));
        }
    }
}

/// The Python library's LoRA defaults have no entry for ViT (only AdaMSS and FRoD list
/// `["query", "value"]`), so `target_modules` must be given, as in Python.
impl AdapterSites for ViTModel {
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

/// ViT with a linear classifier on the CLS position (transformers' `ViTForImageClassification`).
#[derive(Module, Debug)]
pub struct ViTForImageClassification {
    /// The encoder without pooler, at paths `vit.*`.
    pub vit: ViTModel,
    /// `hidden_size -> num_labels`.
    pub classifier: AdaptedLinear,
}

impl ViTForImageClassification {
    /// A new model for `config` with `config.num_labels` outputs.
    pub fn new(config: &ViTConfig, device: &Device) -> Self {
        ViTForImageClassification {
            vit: ViTModel::without_pooler(config, device),
            classifier: super::linear(config.hidden_size, config.num_labels, true, config, device),
        }
    }

    /// Loads a transformers `ViTForImageClassification` folder (`config.json`, safetensors).
    ///
    /// A folder holding a bare `ViTModel` fails with [`peft_core::Error::MissingTensor`] for the
    /// classifier; [`ViTForImageClassification::from_pretrained_with`] can allow that.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_with(dir, device, false)
    }

    /// Like [`ViTForImageClassification::from_pretrained`]; with `new_head`, a file without
    /// classifier weights is accepted and the classifier keeps its fresh initialisation.
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
        let dir = dir.as_ref();
        let config = ViTConfig::from_file(dir)?;
        super::load::load_head(Self::new(&config, device), dir, new_head)
    }

    /// Class logits from the CLS position of the last hidden state.
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, num_channels, height, width]`
    /// - output: `[batch, num_labels]`
    pub fn forward(&self, pixel_values: Tensor<4>) -> Result<Tensor<2>> {
        Ok(self.classifier.forward(cls_token(self.vit.forward(pixel_values)?)))
    }

    /// Logits and the mean cross-entropy against class `labels` (transformers' single-label loss).
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, num_channels, height, width]`
    /// - `labels`: `[batch]`
    /// - output: `([batch, num_labels], [1])`
    pub fn forward_with_loss(&self, pixel_values: Tensor<4>, labels: Tensor<1, Int>) -> Result<(Tensor<2>, Tensor<1>)> {
        let logits = self.forward(pixel_values)?;
        Ok((logits.clone(), cross_entropy(logits, labels)))
    }
}

impl AdapterSites for ViTForImageClassification {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.vit.visit_sites_prefixed("vit.", f);
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
