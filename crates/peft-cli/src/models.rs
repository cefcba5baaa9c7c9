//! Loading a model folder with its adapters through `AutoModel`, and reading tensor inputs.

use anyhow::{Context, Result, bail};
use peft::PeftModel;
use peft::TaskModel;
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::models::auto::{AutoInputs, AutoModel, Head, ModelInfo};
use std::path::{Path, PathBuf};

use crate::input::Batch;

/// Reads `dir/config.json`'s `model_type` and `architectures`.
pub fn model_kind(dir: &Path) -> Result<ModelInfo> {
    ModelInfo::from_dir(dir).with_context(|| format!("{} is not a model folder", dir.display()))
}

/// How to load a model with adapters.
pub struct LoadSpec<'a> {
    /// The base model folder.
    pub model: &'a Path,
    /// Adapter folders: the first is named `default`, the others after their folder.
    pub adapters: &'a [PathBuf],
    /// The adapter to activate (default: the first).
    pub adapter_name: Option<&'a str>,
    /// A head asked for on the command line (else the adapter's task, else `architectures`).
    pub head: Option<Head>,
}

/// A base model, with adapters or without.
pub enum Loaded {
    /// No adapter was given.
    Base(AutoModel),
    /// The base with its adapters.
    Peft(PeftModel<AutoModel>),
}

impl Loaded {
    /// The model with the active adapters merged into its weights.
    pub fn merged(self) -> Result<AutoModel> {
        match self {
            Loaded::Base(m) => Ok(m),
            Loaded::Peft(p) => Ok(p.merge_and_unload()?),
        }
    }

    /// The head's output, through the active adapters (`PeftModel::forward`).
    pub fn forward(&self, inputs: AutoInputs) -> Result<peft::Logits> {
        Ok(match self {
            Loaded::Base(m) => {
                m.input_limits().check_forward(&inputs)?;
                m.forward_task(inputs)?.logits
            }
            Loaded::Peft(p) => p.forward(inputs)?.logits,
        })
    }

    /// New tokens, through the active adapters (`PeftModel::generate`).
    pub fn generate(&self, inputs: AutoInputs, config: &peft::GenerationConfig) -> Result<peft::Generated> {
        Ok(match self {
            Loaded::Base(m) => {
                let encoder_decoder = m.task_type() == Some(peft::TaskType::Seq2SeqLm);
                m.input_limits().check_generation(&inputs, config, encoder_decoder)?;
                TaskModel::generate(m, inputs, config)?
            }
            Loaded::Peft(p) => p.generate(inputs, config)?,
        })
    }

    /// The positions a prompt-style adapter puts in front of the tokens (0 without one).
    pub fn virtual_positions(&self) -> usize {
        match self {
            Loaded::Base(_) => 0,
            Loaded::Peft(p) => p.virtual_positions(),
        }
    }

    /// The wrapped model (for its family and config), adapters aside.
    pub fn base(&self) -> &AutoModel {
        match self {
            Loaded::Base(m) => m,
            Loaded::Peft(p) => p.model(),
        }
    }
}

/// Loads the base with the head the adapter's task asks for, then the adapters.
pub fn load(spec: &LoadSpec<'_>, device: &Device) -> Result<Loaded> {
    let base = if is_gguf(spec.model) {
        AutoModel::from_gguf(spec.model, device)?
    } else if let Some(first) = spec.adapters.first() {
        // The adapter's task picks the head; a head it saves (modules_to_save) sizes it.
        peft::base_for_adapter(spec.model, first, spec.head, device)?
    } else {
        AutoModel::from_pretrained(spec.model, spec.head, device)?
    };
    let Some(first) = spec.adapters.first() else {
        return Ok(Loaded::Base(base));
    };
    let mut peft = PeftModel::from_pretrained(base, first).with_context(|| format!("cannot load the adapter {} onto {}", first.display(), spec.model.display()))?;
    for dir in &spec.adapters[1..] {
        let name = crate::hub::adapter_name(dir);
        peft.load_adapter(dir, &name).with_context(|| format!("cannot load the adapter {}", dir.display()))?;
    }
    if let Some(name) = spec.adapter_name {
        peft.set_adapter(name)?;
    }
    Ok(Loaded::Peft(peft))
}

/// Whether `--model` names a llama.cpp GGUF file rather than a transformers folder.
pub fn is_gguf(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Parses a `--head` value.
pub fn parse_head(text: &str) -> Result<Head> {
    const HEADS: [Head; 8] = [
        Head::CausalLm,
        Head::Seq2SeqLm,
        Head::SequenceClassification,
        Head::TokenClassification,
        Head::QuestionAnswering,
        Head::FeatureExtraction,
        Head::ImageClassification,
        Head::SemanticSegmentation,
    ];
    HEADS
        .into_iter()
        .find(|h| h.name() == text)
        .with_context(|| format!("unknown head `{text}`; one of: {}", HEADS.map(|h| h.name()).join(", ")))
}

/// Token ids and their mask as tensors.
pub fn batch_tensors(batch: &Batch, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let ids = Tensor::<2, Int>::from_data(TensorData::new(batch.ids.clone(), batch.shape), device);
    let mask = Tensor::<2, Int>::from_data(TensorData::new(batch.mask.clone(), batch.shape), device);
    (ids, mask)
}

/// One float tensor of rank `D` from a safetensors file: the tensor named `key`, else the
/// file's only tensor.
pub fn read_tensor<const D: usize>(path: &Path, key: &str, device: &Device) -> Result<Tensor<D>> {
    let tensors = peft::io::tensors::read_safetensors(path)?;
    let data = match tensors.get(key) {
        Some(d) => d.clone(),
        None if tensors.len() == 1 => tensors.values().next().cloned().context("empty file")?,
        None => bail!("{} has no tensor `{key}` (it has: {})", path.display(), tensors.keys().cloned().collect::<Vec<_>>().join(", ")),
    };
    if data.shape().len() != D {
        bail!("{}: `{key}` has shape {:?}; expected {D} dimensions", path.display(), data.shape());
    }
    Ok(Tensor::from_data(data, device))
}

/// The model inputs from the command line's pieces.
pub fn inputs(
    ids: Option<&Batch>,
    decoder_ids: Option<&Batch>,
    pixel_values: Option<&Path>,
    input_features: Option<&Path>,
    device: &Device,
) -> Result<AutoInputs> {
    let mut inputs = AutoInputs::default();
    if let Some(batch) = ids {
        let (ids, mask) = batch_tensors(batch, device);
        inputs.input_ids = Some(ids);
        inputs.attention_mask = Some(mask);
    }
    if let Some(batch) = decoder_ids {
        inputs.decoder_input_ids = Some(batch_tensors(batch, device).0);
    }
    if let Some(path) = pixel_values {
        inputs.pixel_values = Some(read_tensor(path, "pixel_values", device)?);
    }
    if let Some(path) = input_features {
        inputs.input_features = Some(read_tensor(path, "input_features", device)?);
    }
    Ok(inputs)
}

/// Adds the command-line flag that supplies a missing model input to the library's error
/// (which names the input, not the flag).
pub fn with_flag_hint(error: anyhow::Error) -> anyhow::Error {
    const FLAGS: [(&str, &str); 4] = [
        ("`decoder_input_ids`", "pass --decoder-input-ids 0,3,4"),
        ("`input_ids`", "pass --input-ids 5,6,7"),
        ("`pixel_values`", "pass --pixel-values FILE.safetensors"),
        ("`input_features`", "pass --input-features FILE.safetensors"),
    ];
    let text = error.to_string();
    match FLAGS.iter().find(|(input, _)| text.contains(input) && text.contains("needs")) {
        Some((_, hint)) => error.context(hint.to_string()),
        None => error,
    }
}
