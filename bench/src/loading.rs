//! Peak memory while loading a model: a generated Llama checkpoint (sharded, over 1 GB) and the
//! real models of `shared/ASSETS.md`, each loaded in a fresh process.
//!
//! The measure is the growth of the resident set's high-water mark (`VmHWM`) from just before
//! the load to just after, against the bytes the loaded parameters take (`f32`, the dtype they
//! load in): a ratio of 1.0 means nothing beyond the model itself was held at any point.

use anyhow::{Context, Result};
use burn::tensor::Device;
use peft::AdapterSites;
use peft::io::export::model_tensors;
use peft::io::tensors::write_safetensors;
use peft::io::weights::parameter_keys;
use peft::models::auto::AutoModel;
use peft::models::llama::{LlamaConfig, LlamaForCausalLM};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

use crate::memory::{reset_peak, rss};

/// One load's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadMeasure {
    /// Bytes of the files read.
    pub file_bytes: u64,
    /// Bytes of the loaded parameters (in the type they load in), a tied copy (`lm_head` sharing the embedding's
    /// storage) counted once.
    pub param_bytes: u64,
    /// Growth of the resident high-water mark during the load.
    pub peak_growth: u64,
    /// Seconds the load took.
    pub seconds: f64,
}

impl LoadMeasure {
    /// Peak growth over the parameters' bytes.
    pub fn ratio(&self) -> f64 {
        self.peak_growth as f64 / self.param_bytes.max(1) as f64
    }
}

/// Loads `path` (a transformers folder or a `.gguf` file) on the CPU and measures it; call in a
/// process that has done nothing else large, since the high-water mark is per process.
pub fn measure(path: &Path, bf16: bool) -> Result<LoadMeasure> {
    let device = Device::flex();
    let file_bytes = files_bytes(path)?;
    let exact = reset_peak();
    let before = rss()?;
    let start = Instant::now();
    let load = || {
        if path.extension().is_some_and(|e| e == "gguf") {
            AutoModel::from_gguf(path, &device)
        } else {
            AutoModel::from_pretrained(path, None, &device)
        }
    };
    let model = if bf16 { peft::io::weights::with_load_dtype(peft::burn::tensor::FloatDType::BF16, load) } else { load() }
    .with_context(|| format!("cannot load {}", path.display()))?;
    let seconds = start.elapsed().as_secs_f64();
    let after = rss()?;
    anyhow::ensure!(exact, "this kernel cannot reset VmHWM; the peak would include what came before the load");
    // A tied copy (`lm_head` sharing the embedding's storage) is counted once.
    let tied: Vec<String> = model.tied_weights().into_iter().map(|(copy, _)| copy).collect();
    let count: usize = parameter_keys(&model).into_iter().filter(|(key, _)| !tied.contains(key)).map(|(_, shape)| shape.iter().product::<usize>()).sum();
    let param_bytes = count as u64 * if bf16 { 2 } else { 4 };
    drop(model);
    Ok(LoadMeasure { file_bytes, param_bytes, peak_growth: after.peak.saturating_sub(before.current), seconds })
}

/// Bytes of a `.gguf` file, or of a folder's `*.safetensors` files.
fn files_bytes(path: &Path) -> Result<u64> {
    if path.is_file() {
        return Ok(std::fs::metadata(path)?.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "safetensors") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// The generated checkpoint's shape: a Llama of hidden 1024, GQA 16/4, `layers` layers and a
/// 32,000-token vocabulary with an untied head (20 layers: 1.2 GB in f32).
pub fn generated_config(layers: usize) -> LlamaConfig {
    LlamaConfig {
        vocab_size: 32_000,
        hidden_size: 1024,
        intermediate_size: 2816,
        num_hidden_layers: layers,
        num_attention_heads: 16,
        num_key_value_heads: Some(4),
        tie_word_embeddings: false,
        ..LlamaConfig::default()
    }
}

/// Writes a randomly initialised Llama (`generated_config(layers)`) as transformers would:
/// `config.json`, two shards (`f32`, or `bf16` as most Hub checkpoints are) and
/// `model.safetensors.index.json`.
pub fn generate(dir: &Path, layers: usize, bf16: bool) -> Result<()> {
    let config = generated_config(layers);
    let model = LlamaForCausalLM::new(&config, &Device::flex());
    let mut tensors = model_tensors(&model)?;
    drop(model);
    if bf16 {
        tensors = tensors.into_iter().map(|(key, data)| (key, data.convert::<half::bf16>())).collect();
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    let second = tensors.split_off(tensors.len() / 2);
    let shards = [("model-00001-of-00002.safetensors", tensors), ("model-00002-of-00002.safetensors", second)];
    let mut weight_map = serde_json::Map::new();
    for (file, part) in shards {
        for (key, _) in &part {
            weight_map.insert(key.clone(), file.into());
        }
        write_safetensors(&dir.join(file), part)?;
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(dir.join("model.safetensors.index.json"), serde_json::to_string_pretty(&index)?)?;
    Ok(())
}
