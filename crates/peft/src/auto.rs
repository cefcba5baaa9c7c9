//! `AutoPeftModel*`: an adapter folder names its base model and task; load both in one call.

use burn::tensor::Device;
use peft_core::{Error, PeftConfig, Result};
use peft_io::hub::{Hub, RepoFiles, is_repo_id};
use peft_models::auto::{AutoModel, Head};
use std::path::{Path, PathBuf};

use crate::PeftModel;

impl PeftModel<AutoModel> {
    /// Loads the base model the adapter's `adapter_config.json` names in
    /// `base_model_name_or_path`, with the head its `task_type` asks for, then the adapter
    /// (named `default`) — the Python library's `AutoPeftModel*.from_pretrained`.
    ///
    /// The adapter and the base may each be a folder or a Hub id (`org/name`): a folder that
    /// exists always wins; an id is read from the local Hugging Face cache (and downloaded
    /// when the `hub` feature is on and a network is there), the base at the config's
    /// `revision` (default `main`); see [`crate::io::hub`]. A base written as a relative path
    /// is also looked for relative to the adapter folder and every folder above it.
    ///
    /// # Errors
    /// [`Error::InvalidState`] when the config names no base or no such folder or cached id
    /// exists (saying which file the cache lacks; pass the base with
    /// [`PeftModel::from_pretrained_auto_with_base`]); [`Error::Io`] naming the file an adapter
    /// id lacks in the cache when it cannot be downloaded; the loading errors of the base and
    /// the adapter.
    pub fn from_pretrained_auto(adapter: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_pretrained_auto_with_hub(adapter, &Hub::from_env(), device)
    }

    /// Like [`PeftModel::from_pretrained_auto`] with the Hub cache (and download settings)
    /// given instead of read from the environment.
    pub fn from_pretrained_auto_with_hub(adapter: impl AsRef<Path>, hub: &Hub, device: &Device) -> Result<Self> {
        let adapter_dir = resolve_id(hub, adapter.as_ref(), None, RepoFiles::Adapter)?;
        let config = PeftConfig::from_dir(&adapter_dir)?;
        let base = resolve_base_with_hub(&adapter_dir, &config, hub)?;
        Self::from_pretrained_auto_with_base(&adapter_dir, base, device)
    }

    /// Like [`PeftModel::from_pretrained_auto`] with the base model folder given.
    ///
    /// A classifier head saved in the adapter's `modules_to_save` (the usual case when a bare
    /// encoder such as MiniLM was fine-tuned) is built at the size of the saved tensors when the
    /// base folder lacks it; see [`base_for_adapter`].
    pub fn from_pretrained_auto_with_base(adapter_dir: impl AsRef<Path>, base_dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let model = base_for_adapter(base_dir, adapter_dir.as_ref(), None, device)?;
        PeftModel::from_pretrained(model, adapter_dir)
    }
}

/// A path, or a Hub id resolved through `hub` (a path that is not valid UTF-8 is never an id).
fn resolve_id(hub: &Hub, name: &Path, revision: Option<&str>, files: RepoFiles) -> Result<PathBuf> {
    match name.to_str() {
        Some(text) => hub.resolve(text, revision, files),
        None => Ok(name.to_path_buf()),
    }
}

/// The folder `base_model_name_or_path` names, searched as documented on `from_pretrained_auto`,
/// with the environment's Hub cache.
pub fn resolve_base(adapter_dir: &Path, config: &PeftConfig) -> Result<PathBuf> {
    resolve_base_with_hub(adapter_dir, config, &Hub::from_env())
}

/// Like [`resolve_base`] with the Hub cache given: a folder as written, else relative to the
/// adapter folder or a folder above it, else (for an `org/name` id) the cached snapshot at the
/// config's `revision`.
pub fn resolve_base_with_hub(adapter_dir: &Path, config: &PeftConfig, hub: &Hub) -> Result<PathBuf> {
    let Some(name) = config.base_model_name_or_path() else {
        return Err(Error::InvalidState(format!(
            "{} names no base model (`base_model_name_or_path` is unset): load the base yourself and use PeftModel::from_pretrained",
            adapter_dir.join(peft_core::CONFIG_FILE).display()
        )));
    };
    let written = PathBuf::from(name);
    let candidates = std::iter::once(written.clone()).chain(adapter_dir.ancestors().map(|a| a.join(&written)));
    for candidate in candidates {
        if candidate.join("config.json").is_file() {
            return Ok(candidate);
        }
    }
    let hub_error = match is_repo_id(name) {
        true => match hub.resolve(name, config.common().revision.as_deref(), RepoFiles::Model) {
            Ok(dir) => return Ok(dir),
            Err(e) => format!("; as a Hub id: {e}"),
        },
        false => String::new(),
    };
    Err(Error::InvalidState(format!(
        "the base model `{name}` that {} names is not a folder here (as written, or under {} or a folder above it){hub_error}. Pass its folder to from_pretrained_auto_with_base (CLI: --model DIR)",
        adapter_dir.join(peft_core::CONFIG_FILE).display(),
        adapter_dir.display()
    )))
}

/// Loads the base model folder an adapter is attached to: with `head` (else the head the
/// adapter's `task_type` asks for, else the folder's own), and, when the adapter saves its
/// classification head in `modules_to_save`, a head with as many outputs as the saved tensors
/// have (the folder may lack the head: the adapter's copy computes the output).
///
/// # Errors
/// The adapter config's and the base's loading errors.
pub fn base_for_adapter(base_dir: impl AsRef<Path>, adapter_dir: &Path, head: Option<Head>, device: &Device) -> Result<AutoModel> {
    let config = PeftConfig::from_dir(adapter_dir)?;
    let head = head.or(config.task_type().map(Head::from_task));
    let base_dir = base_dir.as_ref();
    let loaded = match saved_head_size(adapter_dir, &config)? {
        Some(num_labels) => AutoModel::from_pretrained_with_num_labels(base_dir, head, num_labels, device),
        None => AutoModel::from_pretrained(base_dir, head, device),
    };
    // A head missing from the base is what an adapter of another architecture looks like at
    // this point (a BERT classifier's adapter asks a GPT-2 for BERT's head): say so instead.
    loaded.map_err(|e| match e {
        Error::MissingTensor { .. } => another_architecture(base_dir, adapter_dir, &config).unwrap_or(e),
        e => e,
    })
}

/// [`Error::AdapterForAnotherModel`] when none of the modules an adapter's tensors name appears
/// in the base checkpoint's keys (compared on their last three path segments, which survive the
/// different prefixes of heads and bare models).
fn another_architecture(base_dir: &Path, adapter_dir: &Path, config: &PeftConfig) -> Option<Error> {
    let base_keys = peft_io::weights::checkpoint_tensor_names(base_dir).ok()?;
    let adapter = peft_io::tensors::describe_safetensors(&adapter_dir.join(peft_io::adapter::WEIGHTS_FILE)).ok()?;
    let modules: Vec<String> = adapter.iter().filter_map(|t| adapter_module(&t.name)).collect();
    if modules.is_empty() {
        return None;
    }
    let in_base = |module: &String| {
        let segments: Vec<&str> = module.split('.').collect();
        let tail = segments[segments.len().saturating_sub(3)..].join(".");
        base_keys.iter().any(|k| k.contains(&format!("{tail}.")))
    };
    let unmatched: Vec<&String> = modules.iter().filter(|m| !in_base(m)).collect();
    if unmatched.len() < modules.len() {
        return None;
    }
    let model = peft_models::auto::ModelInfo::from_dir(base_dir).map(|i| i.model_type).unwrap_or_else(|_| base_dir.display().to_string());
    Some(Error::AdapterForAnotherModel {
        model,
        unmatched: unmatched.len(),
        total: modules.len(),
        example: unmatched[0].clone(),
        base: config.base_model_name_or_path().map(str::to_string),
    })
}

/// The module path a saved adapter key names (`bert.encoder.layer.0.attention.self.query` for
/// `base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight`).
fn adapter_module(key: &str) -> Option<String> {
    let key = key.strip_prefix(peft_io::adapter::KEY_PREFIX)?;
    let segments: Vec<&str> = key.split('.').collect();
    let end = segments.iter().position(|s| s.starts_with("lora_") || s.starts_with("ia3_") || matches!(*s, "modules_to_save" | "original_module" | "weight" | "bias"))?;
    (end > 0).then(|| segments[..end].join("."))
}


/// The number of outputs of the classification head an adapter saves in `modules_to_save`
/// (`classifier.weight` `[num_labels, hidden]`, RoBERTa's `classifier.out_proj.weight`, GPT-2's
/// `score.weight`), or `None` when it saves no head.
///
/// # Errors
/// The config's errors; [`Error::Io`] / [`Error::Format`] when the weights file cannot be read.
pub fn saved_head_size(adapter_dir: &Path, config: &PeftConfig) -> Result<Option<usize>> {
    let mut names = config.modules_to_save();
    if matches!(config.task_type(), Some(peft_core::TaskType::SeqCls | peft_core::TaskType::TokenCls)) {
        // The Python library saves these for classification tasks even when the config omits them.
        names.extend(["classifier".to_string(), "score".to_string()]);
    }
    if names.is_empty() {
        return Ok(None);
    }
    let weights = adapter_dir.join(peft_io::adapter::WEIGHTS_FILE);
    if !weights.is_file() {
        return Ok(None);
    }
    let tensors = peft_io::tensors::describe_safetensors(&weights)?;
    let mut best: Option<(u8, usize)> = None;
    for t in &tensors {
        // Site methods save copies under `base_model.model.`, prompt-learning methods under `base_model.`.
        let key = t.name.strip_prefix(peft_io::adapter::KEY_PREFIX).or_else(|| t.name.strip_prefix(crate::model::PROMPT_HEAD_PREFIX));
        let Some(path) = key.and_then(|k| k.strip_suffix(".weight")) else { continue };
        if t.shape.len() != 2 {
            continue;
        }
        let covered = names.iter().any(|n| path == n || path.ends_with(&format!(".{n}")) || path.starts_with(&format!("{n}.")) || path.contains(&format!(".{n}.")));
        if !covered {
            continue;
        }
        // RoBERTa's head is `dense` then `out_proj`: the labels are `out_proj`'s outputs; other
        // saved modules (embeddings, say) are no head.
        let last = path.rsplit('.').next().unwrap_or(path);
        let rank = match last {
            "out_proj" => 2,
            "classifier" | "score" => 1,
            _ => continue,
        };
        if best.is_none_or(|(was, _)| rank > was) {
            best = Some((rank, t.shape[0]));
        }
    }
    Ok(best.map(|(_, n)| n))
}
