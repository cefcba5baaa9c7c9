//! The PEFT quicktour on a sequence-to-sequence model.
//!
//! The Python quicktour: `LoraConfig(task_type=SEQ_2_SEQ_LM, r=8, lora_alpha=32,
//! lora_dropout=0.1)` on an mT5, `print_trainable_parameters`, train, `save_pretrained`, then
//! `AutoPeftModelForSeq2SeqLM.from_pretrained(adapter)` and `generate`. Here the model is a
//! T5/mT5 folder (default: the tiny `fixtures/models/mt5`), the task is to copy the source
//! sentence, and the reload goes through [`PeftModel::from_pretrained_auto`], which finds the
//! base from the adapter's `base_model_name_or_path`.

use anyhow::{Context, Result};
use peft::burn::module::Module;
use peft::burn::optim::{AdamWConfig, GradientsParams};
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::models::auto::{AutoInputs, AutoModel};
use peft::models::generation::GenerationConfig;
use peft::models::t5::T5ForConditionalGeneration;
use peft::{LoraConfig, PeftModel, TaskType, get_peft_model};
use std::path::PathBuf;

use crate::common::{Rng, progress_bar, scalar};

/// Which model, where the adapter goes, how long to train.
#[derive(Clone, Debug)]
pub struct Options {
    /// A T5 or mT5 folder.
    pub model_dir: PathBuf,
    /// The adapter folder written (its config records `model_dir` as the base).
    pub out_dir: PathBuf,
    /// AdamW steps.
    pub steps: usize,
}

impl Options {
    /// The guide's settings (fewer steps in smoke mode).
    pub fn new(model_dir: impl Into<PathBuf>, out_dir: impl Into<PathBuf>, smoke: bool) -> Self {
        Options { model_dir: model_dir.into(), out_dir: out_dir.into(), steps: if smoke { 25 } else { 60 } }
    }
}

/// What the run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// `print_trainable_parameters`'s line.
    pub trainable: String,
    /// The first and last training loss.
    pub loss: (f32, f32),
    /// Source tokens of the held-out rows.
    pub sources: Vec<Vec<u32>>,
    /// What the trained model generates for them.
    pub trained: Vec<Vec<u32>>,
    /// What the model reloaded with `from_pretrained_auto` generates.
    pub reloaded: Vec<Vec<u32>>,
    /// What the base model alone generates.
    pub base: Vec<Vec<u32>>,
}

/// Rows of 5 random tokens, and the same tokens followed by eos as labels.
fn copy_rows(rng: &mut Rng, rows: usize, vocab: usize, eos: u32) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let sources: Vec<Vec<u32>> = (0..rows).map(|_| (0..5).map(|_| 3 + rng.below(vocab - 3) as u32).collect()).collect();
    let labels = sources.iter().map(|s| s.iter().copied().chain([eos]).collect()).collect();
    (sources, labels)
}

fn tensor(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let width = rows.first().map_or(0, Vec::len);
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device)
}

/// Runs the quicktour.
pub fn run(options: &Options) -> Result<Report> {
    let device = peft::device::default_device()?.autodiff();
    let base = T5ForConditionalGeneration::from_pretrained(&options.model_dir, &device)
        .with_context(|| format!("loading {}", options.model_dir.display()))?;
    let eos = base.config.eos_token_ids().first().copied().unwrap_or(1);
    let vocab = base.config.vocab_size;
    let config = LoraConfig::new(8)
        .with_lora_alpha(32.0)
        .with_lora_dropout(0.1)
        .with_task_type(TaskType::Seq2SeqLm)
        .with_base_model_name_or_path(options.model_dir.display().to_string());
    let mut model = get_peft_model(base, config)?;
    let trainable = model.trainable_parameters_line();

    let mut rng = Rng::new(11);
    let (sources, labels) = copy_rows(&mut rng, 8, vocab.min(96), eos);
    let (source, target) = (tensor(&sources, &device), tensor(&labels, &device));
    let mut optim = AdamWConfig::new().init();
    let bar = progress_bar(options.steps, true)?;
    let mut losses = Vec::with_capacity(options.steps);
    for _ in 0..options.steps {
        // The seq2seq loss through every active adapter (PeftModel::forward): the decoder
        // inputs are the labels shifted right, as transformers derives them.
        let inputs = peft::ModelInputs::ids(source.clone()).with_labels(peft::Labels::Tokens(target.clone()));
        let loss = model.forward(inputs)?.loss.context("labels give a loss")?;
        losses.push(scalar(loss.clone())?);
        bar.set_message(format!("{:.3}", losses[losses.len() - 1]));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
        bar.inc(1);
    }
    bar.finish_and_clear();
    model.save_pretrained(&options.out_dir)?;

    let plain = device.clone().inner();
    let held_out = &sources[..4];
    let inputs = AutoInputs::ids(tensor(held_out, &plain));
    // The folder's generation_config.json supplies eos, so rows stop where the trained model's do.
    let mut generation = GenerationConfig::from_pretrained(&options.model_dir)?;
    generation.max_new_tokens = Some(6);
    let trained = model.valid().model().generate_greedy(tensor(held_out, &plain), None, 6);
    let mut reloaded = PeftModel::<AutoModel>::from_pretrained_auto(&options.out_dir, &plain)?;
    let again = reloaded.generate(inputs.clone(), &generation)?.tokens;
    let base = reloaded.with_adapters_disabled(|m| m.generate(&inputs, &generation))?.tokens;
    Ok(Report {
        trainable,
        loss: (losses.first().copied().unwrap_or(f32::NAN), losses.last().copied().unwrap_or(f32::NAN)),
        sources: held_out.to_vec(),
        trained,
        reloaded: again,
        base,
    })
}
