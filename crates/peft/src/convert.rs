//! PiSSA/OLoRA adapters converted to plain LoRA for the original base model, as the Python
//! library's `save_pretrained(path_initial_model_for_weight_conversion=...)` writes them.
//!
//! A PiSSA or OLoRA adapter trains on a residual base `W_res = W - s B0 A0` (`A0`, `B0`: its
//! factors before training). After training, `W_res + s B A = W + s (B A - B0 A0)`, and that
//! difference is a LoRA update of twice the rank on the original `W`:
//!
//! `s (B A - B0 A0) = s [B | -B0] [A ; A0]`
//!
//! so the converted adapter stacks `A` over `A0` and puts `-B0` beside `B`, doubles `r` (and
//! `lora_alpha`, so `s` stays; times `sqrt(2)` with rsLoRA), and starts plainly
//! (`init_lora_weights: true`). It loads onto the unchanged base model here and in Python, and
//! combines with other adapters.

use std::path::Path;

use burn::tensor::TensorData;
use peft_core::{Error, InitLoraWeights, LoraConfig, PeftConfig, Result};

use crate::tensors::TensorMap;

/// The suffixes of the factors that stack along the rank: `A`-like stack rows, `B`-like columns.
const A_SUFFIXES: [&str; 2] = ["lora_A.weight", "lora_embedding_A"];
const B_SUFFIXES: [&str; 2] = ["lora_B.weight", "lora_embedding_B"];

/// The config of the converted adapter: rank and alpha doubled, a plain start.
///
/// # Errors
/// [`Error::Unsupported`] for a config that is not LoRA, for DoRA (its magnitude normalises the
/// whole update, so the difference is not a LoRA update), and for rsLoRA with `rank_pattern` or
/// `alpha_pattern` (the Python library refuses that too: the scaling cannot be kept per module).
pub(crate) fn plain_lora_config(config: &PeftConfig) -> Result<PeftConfig> {
    let PeftConfig::Lora(lora) = config else {
        return Err(Error::Unsupported {
            what: format!("converting a {} adapter to plain LoRA", config.peft_type().map_or("custom".into(), |t| format!("{t:?}"))),
            supported: "LoRA adapters (PiSSA, OLoRA or plain initialisation)".into(),
        });
    };
    if lora.use_dora {
        return Err(Error::Unsupported {
            what: "converting a DoRA adapter to plain LoRA".into(),
            supported: "adapters with use_dora = false; save this one as it is".into(),
        });
    }
    if lora.use_rslora && !(lora.rank_pattern.is_empty() && lora.alpha_pattern.is_empty()) {
        return Err(Error::Unsupported {
            what: "converting an rsLoRA adapter with rank_pattern or alpha_pattern to plain LoRA".into(),
            supported: "rsLoRA with one rank and alpha for every module, or plain LoRA scaling".into(),
        });
    }
    let mut converted: LoraConfig = lora.clone();
    converted.r *= 2;
    converted.lora_alpha *= if lora.use_rslora { std::f64::consts::SQRT_2 } else { 2.0 };
    converted.rank_pattern.values_mut().for_each(|r| *r *= 2);
    converted.alpha_pattern.values_mut().for_each(|a| *a *= 2.0);
    converted.init_lora_weights = InitLoraWeights::Default;
    Ok(PeftConfig::Lora(converted))
}

/// The trained tensors with each factor stacked with its value before training (`initial`, read
/// from `initial_dir`): `A' = [A ; A0]`, `B' = [B | -B0]`. Other tensors (biases, heads of
/// `modules_to_save`) are kept as they are.
///
/// # Errors
/// [`Error::MissingTensor`] when `initial` lacks a factor, [`Error::ShapeMismatch`] when its shape
/// differs from the trained one: the initial adapter must come from the same config and model.
pub(crate) fn stack_with_initial(
    tensors: Vec<(String, TensorData)>,
    initial: &TensorMap,
    initial_dir: &Path,
) -> Result<Vec<(String, TensorData)>> {
    tensors
        .into_iter()
        .map(|(key, trained)| {
            let a_like = A_SUFFIXES.iter().any(|s| key.ends_with(s));
            let b_like = B_SUFFIXES.iter().any(|s| key.ends_with(s));
            if !(a_like || b_like) {
                return Ok((key, trained));
            }
            let start = initial.get(&key).ok_or_else(|| Error::MissingTensor {
                key: key.clone(),
                file: initial_dir.join(peft_io::adapter::WEIGHTS_FILE),
                fix: "pass the folder saved from this adapter before training (same config, same model)".into(),
            })?;
            if start.shape() != trained.shape() {
                let path = key.rsplit_once(".lora_").map_or(key.as_str(), |(p, _)| p).to_string();
                return Err(Error::ShapeMismatch { path, tensor: key, expected: trained.shape().to_vec(), actual: start.shape().to_vec() });
            }
            let stacked = if a_like { stack_rows(&trained, start, 1.0) } else { stack_columns(&trained, start, -1.0) };
            Ok((key, stacked.convert_dtype(trained.dtype())))
        })
        .collect()
}

/// `[top ; sign * bottom]` for two `[rows, ...]` tensors of one shape (rows stack).
fn stack_rows(top: &TensorData, bottom: &TensorData, sign: f32) -> TensorData {
    let mut values = floats(top);
    values.extend(floats(bottom).into_iter().map(|v| sign * v));
    let mut shape = top.shape().to_vec();
    shape[0] *= 2;
    TensorData::new(values, shape)
}

/// `[left | sign * right]` for two `[rows, cols]` tensors of one shape (columns stack).
fn stack_columns(left: &TensorData, right: &TensorData, sign: f32) -> TensorData {
    let cols = left.shape().get(1).copied().unwrap_or(1);
    let (left, right) = (floats(left), floats(right));
    let mut values = Vec::with_capacity(2 * left.len());
    for (l, r) in left.chunks(cols.max(1)).zip(right.chunks(cols.max(1))) {
        values.extend_from_slice(l);
        values.extend(r.iter().map(|v| sign * v));
    }
    TensorData::new(values, vec![left.len() / cols.max(1), 2 * cols])
}

fn floats(data: &TensorData) -> Vec<f32> {
    data.clone().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}
