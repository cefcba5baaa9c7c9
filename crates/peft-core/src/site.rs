//! How a model shows its adapter sites to the methods.

use burn::module::Module;

use crate::adapted::{AdaptedBatchNorm2d, AdaptedConv1d, AdaptedConv2d, AdaptedEmbedding, AdaptedLinear, AttentionHook};

/// One adapter site, borrowed mutably.
#[derive(Debug)]
pub enum SiteMut<'a> {
    /// A linear layer.
    Linear(&'a mut AdaptedLinear),
    /// An embedding table.
    Embedding(&'a mut AdaptedEmbedding),
    /// A 1-D convolution.
    Conv1d(&'a mut AdaptedConv1d),
    /// A 2-D convolution.
    Conv2d(&'a mut AdaptedConv2d),
    /// A batch norm layer: only `modules_to_save` copies attach here (no LoRA form).
    BatchNorm2d(&'a mut AdaptedBatchNorm2d),
    /// A self-attention module's output (LLaMA-Adapter).
    Attention(&'a mut AttentionHook),
}

/// The kind of an adapter site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteKind {
    /// A linear layer.
    Linear,
    /// An embedding table.
    Embedding,
    /// A 1-D convolution.
    Conv1d,
    /// A 2-D convolution.
    Conv2d,
    /// A batch norm layer.
    BatchNorm2d,
    /// A self-attention module.
    Attention,
}

/// Runs `$body` with `$s` bound to the site's layer, whatever its kind.
macro_rules! on_site {
    ($site:expr, $s:ident => $body:expr) => {
        match $site {
            SiteMut::Linear($s) => $body,
            SiteMut::Embedding($s) => $body,
            SiteMut::Conv1d($s) => $body,
            SiteMut::Conv2d($s) => $body,
            SiteMut::BatchNorm2d($s) => $body,
            SiteMut::Attention($s) => $body,
        }
    };
}

impl SiteMut<'_> {
    /// Whether the site holds adapter `name`.
    pub fn holds(&self, name: &str) -> bool {
        on_site!(self, s => s.adapters.get(name).is_some())
    }

    /// Adapter `name`'s tensors in the Python library's layouts, keyed by suffix, if the site holds it.
    pub fn export(&self, name: &str) -> Option<Vec<(String, burn::tensor::TensorData)>> {
        on_site!(self, s => s.adapters.get(name).map(|a| a.export()))
    }

    /// The ids of adapter `name`'s parameters at this site (empty when the site lacks it).
    pub fn adapter_param_ids(&self, name: &str) -> Vec<burn::module::ParamId> {
        on_site!(self, s => s.adapters.param_ids(name))
    }

    /// The id of the base layer's bias, if it has one (linear, convolution and batch norm sites).
    pub fn base_bias_id(&self) -> Option<burn::module::ParamId> {
        match self {
            SiteMut::Linear(s) => s.base_layer.bias.as_ref().map(|b| b.id),
            SiteMut::Conv1d(s) => s.base_layer.bias.as_ref().map(|b| b.id),
            SiteMut::Conv2d(s) => s.base_layer.bias.as_ref().map(|b| b.id),
            SiteMut::BatchNorm2d(s) => Some(s.base_layer.bias.id),
            SiteMut::Embedding(_) | SiteMut::Attention(_) => None,
        }
    }

    /// Names of the adapters merged into the site's base weight, in merge order.
    pub fn merged(&self) -> Vec<String> {
        on_site!(self, s => s.adapters.merged().to_vec())
    }

    /// Folds adapter `name` into the site's base weight.
    pub fn merge_adapter(&mut self, name: &str) -> crate::Result<()> {
        on_site!(self, s => s.merge_adapter(name))
    }

    /// Takes merged adapter `name` back out of the site's base weight.
    pub fn unmerge_adapter(&mut self, name: &str) -> crate::Result<()> {
        on_site!(self, s => s.unmerge_adapter(name))
    }

    /// Sets the active adapters (names the site lacks are skipped).
    pub fn set_active(&mut self, names: &[String]) {
        on_site!(self, s => s.adapters.set_active(names))
    }

    /// Turns the site's adapters off or back on.
    pub fn set_disabled(&mut self, disabled: bool) {
        on_site!(self, s => s.adapters.set_disabled(disabled))
    }

    /// Sets (or clears) the per-row adapters of a mixed batch; `path` names the site in the
    /// error when an adapter is merged here ([`crate::Error::MergedAdaptersInMixedBatch`]).
    pub fn set_rows(&mut self, rows: Option<&crate::adapted::MixedBatch>, path: &str) -> crate::Result<()> {
        on_site!(self, s => s.adapters.set_rows(rows, path))
    }

    /// The mixed batch set on the site, if any.
    pub fn mixed_batch(&self) -> Option<crate::adapted::MixedBatch> {
        on_site!(self, s => s.adapters.rows().map(|r| r.batch().clone()))
    }

    /// Removes adapter `name` from the site; whether it was there.
    pub fn remove_adapter(&mut self, name: &str) -> bool {
        on_site!(self, s => s.adapters.remove(name).is_some())
    }

    /// The kind of this site.
    pub fn kind(&self) -> SiteKind {
        match self {
            SiteMut::Linear(_) => SiteKind::Linear,
            SiteMut::Embedding(_) => SiteKind::Embedding,
            SiteMut::Conv1d(_) => SiteKind::Conv1d,
            SiteMut::Conv2d(_) => SiteKind::Conv2d,
            SiteMut::BatchNorm2d(_) => SiteKind::BatchNorm2d,
            SiteMut::Attention(_) => SiteKind::Attention,
        }
    }
}

/// A model built for adapters: it lists its adapter sites under transformers' module paths.
///
/// Paths are exactly those of transformers' `named_modules()` for the same model
/// (`model.layers.3.self_attn.q_proj`), so `target_modules` and adapter files written by the Python
/// library address the same layers here.
pub trait AdapterSites: Module + burn::module::ModuleDisplay {
    /// Calls `f` once per adapter site with its path, always in the same order.
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>));

    /// Paths of the output heads (`lm_head`), which `"all-linear"` leaves out.
    fn output_head_paths(&self) -> Vec<String> {
        Vec::new()
    }

    /// The modules LoRA targets when a config leaves `target_modules` unset: the Python library's
    /// per-architecture defaults (`["q_proj", "v_proj"]` for Llama). Empty: no default.
    fn default_target_modules(&self) -> Vec<String> {
        Vec::new()
    }

    /// transformers' `model_type` of the architecture (`"llama"`, `"t5"`, ...), which keys the
    /// Python library's per-method default targets (IA3's `target_modules` and
    /// `feedforward_modules`). `None`: not a transformers architecture, no defaults.
    fn model_type(&self) -> Option<String> {
        None
    }

    /// Module names trained in full by default for a task (`classifier`/`score` for SEQ_CLS).
    fn default_modules_to_save(&self, task: crate::TaskType) -> Vec<String> {
        match task {
            crate::TaskType::SeqCls | crate::TaskType::TokenCls => vec!["classifier".into(), "score".into()],
            crate::TaskType::QuestionAns => vec!["qa_outputs".into()],
            _ => Vec::new(),
        }
    }

    /// Parameters the checkpoint shares and this model holds twice, as `(copy, source)` keys
    /// (`("lm_head.weight", "model.embed_tokens.weight")` with tied embeddings). Parameter counts
    /// count a copy once, as the Python library does.
    fn tied_weights(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Where the model's weights came from (the folder or file given to `from_pretrained`), as
    /// transformers' `config._name_or_path`: `get_peft_model` records it as the adapter's
    /// `base_model_name_or_path` so the adapter reloads through the auto entry point.
    fn name_or_path(&self) -> Option<String> {
        None
    }

    /// This model's module path for a path or tensor key written with the names of an older
    /// transformers version (transformers 4's `vit.encoder.layer.0.attention.attention.query`
    /// for today's `vit.layers.0.attention.q_proj`), or `None` when `path` has no older form
    /// here. Adapter files written before a rename load through it (with a note).
    fn legacy_path(&self, path: &str) -> Option<String> {
        let _ = path;
        None
    }

    /// Today's module names for a `target_modules` name of an older transformers version that
    /// matches nothing now (ViT's `query` -> `q_proj`, as the PEFT guides write it); empty when
    /// `name` is not one.
    fn legacy_target_names(&self, name: &str) -> Vec<String> {
        let _ = name;
        Vec::new()
    }

    /// The sizes prompt methods take from the model when their config leaves them unset (the
    /// same as [`crate::TaskModel::dims`]); `None` where the model does not take prompt methods.
    fn model_dims(&self) -> Option<crate::ModelDims> {
        None
    }

    /// Like [`AdapterSites::visit_sites_mut`] for reading: runs on a cheap clone (tensors are shared).
    fn visit_sites(&self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        self.clone().visit_sites_mut(f);
    }

    /// Every site path with its kind, in visiting order.
    fn site_paths(&self) -> Vec<(String, SiteKind)> {
        let mut out = Vec::new();
        self.visit_sites(&mut |path, site| out.push((path.to_string(), site.kind())));
        out
    }
}

/// Whether module name `name` (from `modules_to_save`) covers the site at `path`: the path or
/// one of its ancestors is `name` or ends in `.name`, as the Python library wraps whole modules.
pub fn module_covers(name: &str, path: &str) -> bool {
    covering_module(name, path).is_some()
}

/// The path of the module `name` designates that contains the site at `path` (the site itself
/// or an ancestor), if any: `covering_module("classifier", "classifier.dense") == Some("classifier")`.
pub fn covering_module<'a>(name: &str, path: &'a str) -> Option<&'a str> {
    let mut end = path.len();
    loop {
        if crate::targets::name_matches(name, &path[..end]) {
            return Some(&path[..end]);
        }
        end = path[..end].rfind('.')?;
    }
}

#[cfg(test)]
mod tests {
    use super::module_covers;

    #[test]
    fn modules_to_save_cover_children() {
        assert!(module_covers("classifier", "classifier"));
        assert!(module_covers("classifier", "classifier.dense"));
        assert!(module_covers("classifier", "roberta.classifier.out_proj"));
        assert!(!module_covers("classifier", "my_classifier.dense"));
        assert!(!module_covers("score", "bert.pooler.dense"));
    }
}
