//! Adapter folders as the Hugging Face Hub holds them: `adapter_config.json` and
//! `adapter_model.safetensors` with keys such as
//! `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` (no adapter name, PyTorch
//! layouts). Extra adapters live in subfolders named after them.

use burn::tensor::TensorData;
use peft_core::{AdapterSites, CONFIG_FILE, Error, PeftConfig, Result};
use std::path::{Path, PathBuf};

use crate::folder::write_files_atomically;
use crate::tensors::{TensorMap, read_safetensors, safetensors_bytes};

/// The adapter weights file name.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The prefix the Python library puts before module paths in adapter files.
pub const KEY_PREFIX: &str = "base_model.model.";

/// The adapter name the Python library stores at the top of a folder.
pub const DEFAULT_ADAPTER: &str = "default";

/// An adapter folder read from disk.
#[derive(Debug, Clone)]
pub struct AdapterFolder {
    /// The folder.
    pub dir: PathBuf,
    /// Its `adapter_config.json`.
    pub config: PeftConfig,
    /// Its tensors keyed by module path and suffix, `base_model.model.` removed.
    pub tensors: TensorMap,
}

/// Where adapter `name` lives under a save folder: the folder itself for `default`, else a
/// subfolder named after it, as the Python library lays them out.
pub fn adapter_dir(root: &Path, name: &str) -> PathBuf {
    if name == DEFAULT_ADAPTER { root.to_path_buf() } else { root.join(name) }
}

/// Reads an adapter folder: the config first (cheap, and it names the method), then the tensors.
pub fn read_adapter_folder(dir: &Path) -> Result<AdapterFolder> {
    let config = PeftConfig::from_dir(dir)?;
    let file = dir.join(WEIGHTS_FILE);
    if !file.is_file() {
        let fix = if dir.join("adapter_model.bin").is_file() {
            "this folder holds adapter_model.bin (a pickle, which is never loaded here for safety): convert it to safetensors"
        } else {
            "the folder must hold adapter_model.safetensors next to adapter_config.json"
        };
        return Err(Error::io("cannot read", &file, std::io::Error::new(std::io::ErrorKind::NotFound, fix)));
    }
    let raw = read_safetensors(&file)?;
    let mut tensors = TensorMap::with_capacity(raw.len());
    for (key, value) in raw {
        let stripped = key.strip_prefix(KEY_PREFIX).map(str::to_string).unwrap_or(key);
        tensors.insert(stripped, value);
    }
    Ok(AdapterFolder { dir: dir.to_path_buf(), config, tensors })
}

/// Writes an adapter folder atomically: the weights and the config switch together (see
/// [`crate::folder`]), other files in the folder stay. Keys get the `base_model.model.` prefix.
pub fn write_adapter_folder(dir: &Path, config: &PeftConfig, tensors: Vec<(String, TensorData)>) -> Result<()> {
    write_adapter_folder_parts(dir, config, tensors, Vec::new())
}

/// Like [`write_adapter_folder`] with tensors that belong to no module as well
/// (`model_level`: prompt tables and encoders, keyed exactly as the Python library writes them,
/// `prompt_embeddings`, without the `base_model.model.` prefix).
pub fn write_adapter_folder_parts(
    dir: &Path,
    config: &PeftConfig,
    site_tensors: Vec<(String, TensorData)>,
    model_level: Vec<(String, TensorData)>,
) -> Result<()> {
    write_adapter_folder_with_card(dir, config, site_tensors, model_level, None)
}

/// Like [`write_adapter_folder_parts`], with `card` (see [`crate::card`]) written as the
/// folder's `README.md` in the same atomic switch as the adapter files.
pub fn write_adapter_folder_with_card(
    dir: &Path,
    config: &PeftConfig,
    site_tensors: Vec<(String, TensorData)>,
    model_level: Vec<(String, TensorData)>,
    card: Option<&str>,
) -> Result<()> {
    let mut all: Vec<(String, TensorData)> = model_level;
    all.extend(site_tensors.into_iter().map(|(k, v)| (format!("{KEY_PREFIX}{k}"), v)));
    let weights = safetensors_bytes(&dir.join(WEIGHTS_FILE), all)?;
    let config = config.to_json_string();
    let mut files: Vec<(&str, &[u8])> = vec![(WEIGHTS_FILE, &weights), (CONFIG_FILE, config.as_bytes())];
    if let Some(card) = card {
        files.push((crate::card::CARD_FILE, card.as_bytes()));
    }
    write_files_atomically(dir, &files)
}

/// The tensors of adapter `name` at every site that holds it, keyed `{path}.{suffix}` in the
/// Python library's layouts.
pub fn site_tensors<M: AdapterSites>(model: &M, name: &str) -> Vec<(String, TensorData)> {
    let mut out = Vec::new();
    model.visit_sites(&mut |path, site| {
        let exported = site.export(name);
        for (suffix, data) in exported.unwrap_or_default() {
            out.push((format!("{path}.{suffix}"), data));
        }
    });
    out
}
