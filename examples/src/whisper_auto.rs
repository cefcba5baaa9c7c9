//! Speech recognition with a LoRA adapter loaded the `AutoPeftModel` way.
//!
//! The PEFT guides load a trained Whisper adapter with `AutoPeftModelForSeq2SeqLM` /
//! `PeftModel.from_pretrained` and transcribe with `generate`. Here
//! [`PeftModel::from_pretrained_auto`] reads the adapter's `adapter_config.json`, finds the base
//! folder it names (`base_model_name_or_path`) and the head its `task_type` asks for, and loads
//! both; [`AutoModel::generate`] then decodes greedily with the base's `generation_config.json`.
//!
//! When the adapter sits in a Python fixture case (`cases/NAME/adapter`), the case's
//! `expected.safetensors` provides the audio features and the ids Python's `generate` gave
//! (`greedy_adapted`); otherwise the features are seeded noise and nothing is compared.
//!
//! The adapter is loaded for inference, as Python's `from_pretrained` does by default, so the
//! trainable-parameter line reads 0.

use anyhow::{Context, Result, anyhow, bail};
use peft::burn::tensor::{Tensor, TensorData};
use peft::io::tensors::{TensorMap, read_safetensors};
use peft::models::auto::{AutoInputs, AutoModel};
use peft::models::generation::GenerationConfig;
use peft::{PeftConfig, PeftModel, resolve_base};
use std::path::PathBuf;

use crate::common::Rng;

/// Which adapter to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// An adapter folder whose config names a Whisper base.
    pub adapter_dir: PathBuf,
    /// New tokens per row when the adapter has no expected ids to match the length of.
    pub max_new_tokens: usize,
}

impl Options {
    /// The guide's settings. Whisper's fixture is tiny, so smoke mode changes nothing but the
    /// token budget of an adapter without expected ids.
    pub fn new(adapter_dir: impl Into<PathBuf>, smoke: bool) -> Self {
        Options { adapter_dir: adapter_dir.into(), max_new_tokens: if smoke { 4 } else { 10 } }
    }
}

/// What the run produced.
#[derive(Clone, Debug)]
pub struct Report {
    /// The base folder the adapter named.
    pub base_dir: PathBuf,
    /// The family `AutoModel` loaded.
    pub family: &'static str,
    /// `print_trainable_parameters`'s line.
    pub trainable: String,
    /// The new ids of every row (eos included where a row stopped).
    pub generated: Vec<Vec<u32>>,
    /// The ids Python generated, each row cut after its first eos, when the case has them.
    pub expected: Option<Vec<Vec<u32>>>,
}

impl Report {
    /// Whether the generated ids equal the expected ones (`None`: nothing to compare).
    pub fn matches(&self) -> Option<bool> {
        self.expected.as_ref().map(|e| *e == self.generated)
    }
}

/// Loads the adapter and its base from the config alone, and generates; see the module docs.
///
/// # Errors
/// A config naming no findable base, a base that is not a Whisper speech-to-text model,
/// loading and generation errors, and a malformed `expected.safetensors`.
pub fn run(options: &Options) -> Result<Report> {
    let device = peft::device::default_device()?;
    let dir = &options.adapter_dir;
    let config = PeftConfig::from_dir(dir).with_context(|| format!("reading the adapter config in {}", dir.display()))?;
    let base_dir = resolve_base(dir, &config)?;
    let model = PeftModel::<AutoModel>::from_pretrained_auto(dir, &device).with_context(|| format!("loading {}", dir.display()))?;
    model.print_trainable_parameters();
    let trainable = model.trainable_parameters_line();
    let AutoModel::WhisperGen(whisper) = model.model() else {
        bail!("{}: this guide transcribes speech; the adapter's base is a `{}` model", dir.display(), model.model().family());
    };
    let whisper = whisper.config().clone();

    let case = dir.parent().map(|p| p.join("expected.safetensors")).filter(|p| p.is_file());
    let expected = match &case {
        Some(path) => read_safetensors(path).with_context(|| format!("reading {}", path.display()))?,
        None => TensorMap::default(),
    };
    let features: Tensor<3> = match expected.get("input_features") {
        Some(data) => Tensor::from_data(data.clone(), &device),
        None => {
            // One second of seeded noise in the shape the encoder takes.
            let (bins, frames) = (whisper.num_mel_bins, whisper.input_frames());
            let mut rng = Rng::new(3);
            let values: Vec<f32> = (0..bins * frames).map(|_| rng.uniform() * 2.0 - 1.0).collect();
            Tensor::from_data(TensorData::new(values, [1, bins, frames]), &device)
        }
    };

    let mut generation = GenerationConfig::from_pretrained(&base_dir)?;
    let eos = generation.eos_token_id.clone();
    // Python's ids are as wide as its `max_new_tokens`: generate as far.
    let (expected, width) = match expected.get("greedy_adapted") {
        Some(data) => (Some(rows_until_eos(data, &eos)?), data.shape().get(1).copied()),
        None => (None, None),
    };
    generation.max_new_tokens = Some(width.unwrap_or(options.max_new_tokens));
    let inputs = AutoInputs { input_features: Some(features), ..Default::default() };
    let generated = model.generate(inputs, &generation)?.tokens;
    Ok(Report { base_dir, family: model.model().family(), trainable, generated, expected })
}

/// The rows of a `[batch, width]` id tensor, each cut after its first eos id (Python pads
/// finished rows).
fn rows_until_eos(data: &TensorData, eos: &[u32]) -> Result<Vec<Vec<u32>>> {
    let [_, width] = <[usize; 2]>::try_from(data.shape().to_vec()).map_err(|s| anyhow!("expected ids of rank 2, got shape {s:?}"))?;
    let ids: Vec<i64> = data.clone().convert::<i64>().try_into_vec().map_err(|e| anyhow!("reading expected ids: {e:?}"))?;
    let rows = ids.chunks(width.max(1)).map(|row| {
        let row: Vec<u32> = row.iter().map(|&t| u32::try_from(t).unwrap_or(u32::MAX)).collect();
        let end = row.iter().position(|t| eos.contains(t)).map_or(row.len(), |p| p + 1);
        row[..end].to_vec()
    });
    Ok(rows.collect())
}
