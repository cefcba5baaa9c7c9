//! Choosing the architecture and head from a model folder, and running it with adapters.

use anyhow::{Context, Result, bail};
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::models::bert::{BertForSequenceClassification, BertModel, RobertaForSequenceClassification, RobertaModel};
use peft::models::llama::LlamaForCausalLM;
use peft::{AdapterSites, PeftConfig, PeftModel, TaskType};
use std::path::Path;

use crate::commands::logits::Args;
use crate::input::Batch;

/// What `config.json` says about the architecture.
pub struct ModelKind {
    /// `model_type`.
    pub model_type: String,
    /// `architectures`.
    pub architectures: Vec<String>,
}

pub fn model_kind(dir: &Path) -> Result<ModelKind> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {} (pass a model folder)", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let model_type = json.get("model_type").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let architectures = json
        .get("architectures")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    Ok(ModelKind { model_type, architectures })
}

/// The task of the first adapter, if any (it picks the head like `AutoPeftModel*`).
fn adapter_task(args: &Args) -> Result<Option<TaskType>> {
    match args.adapter.first() {
        Some(dir) => Ok(PeftConfig::from_dir(dir)?.task_type()),
        None => Ok(None),
    }
}

/// Runs the model of `args.model` with its adapters on `batch`: `(shape, values)` of the head output.
pub fn logits(args: &Args, batch: &Batch, device: &Device) -> Result<(Vec<usize>, Vec<f32>)> {
    let kind = model_kind(&args.model)?;
    let ids = Tensor::<2, Int>::from_data(TensorData::new(batch.ids.clone(), batch.shape), device);
    let mask = Tensor::<2, Int>::from_data(TensorData::new(batch.mask.clone(), batch.shape), device);
    let classifier = kind.architectures.iter().any(|a| a.ends_with("ForSequenceClassification"))
        || adapter_task(args)? == Some(TaskType::SeqCls);
    match (kind.model_type.as_str(), classifier) {
        ("bert", true) => run(BertForSequenceClassification::from_pretrained(&args.model, device)?, args, |m| m.forward(ids, Some(mask), None)),
        ("bert", false) => run(BertModel::from_pretrained(&args.model, device)?, args, |m| m.forward(ids, Some(mask), None)),
        ("roberta", true) => run(RobertaForSequenceClassification::from_pretrained(&args.model, device)?, args, |m| m.forward(ids, Some(mask), None)),
        ("roberta", false) => run(RobertaModel::from_pretrained(&args.model, device)?, args, |m| m.forward(ids, Some(mask), None)),
        ("llama" | "mistral" | "qwen2", _) => run(LlamaForCausalLM::from_pretrained(&args.model, device)?, args, |m| m.forward(ids, Some(mask))),
        (other, _) => bail!("model_type `{other}` is not supported by `peft logits`; supported: llama, mistral, qwen2, bert, roberta"),
    }
}

/// Loads the adapters onto `model`, activates and optionally merges, and runs `forward`.
fn run<M: AdapterSites, const D: usize>(model: M, args: &Args, forward: impl FnOnce(&M) -> Tensor<D>) -> Result<(Vec<usize>, Vec<f32>)> {
    if args.adapter.is_empty() {
        return Ok(flatten(forward(&model)));
    }
    let mut peft = PeftModel::from_pretrained(model, &args.adapter[0])?;
    for dir in &args.adapter[1..] {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "adapter".into());
        peft.load_adapter(dir, &name)?;
    }
    if let Some(name) = &args.adapter_name {
        peft.set_adapter(name)?;
    }
    if args.merge {
        let merged = peft.merge_and_unload()?;
        return Ok(flatten(forward(&merged)));
    }
    Ok(flatten(forward(peft.model())))
}

fn flatten<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let data = t.into_data();
    let shape = data.shape().to_vec();
    (shape, data.convert::<f32>().try_into_vec().unwrap_or_default())
}
