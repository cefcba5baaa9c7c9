//! (IA)³ on a sequence-to-sequence model, as the PEFT docs' IA3 guide does with mT0:
//! `IA3Config(task_type=SEQ_2_SEQ_LM)` with the architecture's default targets.
//!
//! On T5 the defaults are `k`, `v` and `wo`, with `wo` feed-forward: the vectors scale the keys
//! and values of every attention and the input of every feed-forward output layer. On mT5 (a gated
//! feed-forward, `wi_0`/`wi_1`/`wo`) they are `k`, `v` and `wi_1`, none feed-forward, as in the
//! Python library. The model is a T5 or mT5 folder (default: the tiny `fixtures/models/t5`;
//! `fixtures/models/mt5` is the other), the task is to copy the source sentence,
//! as in the quicktour (one vector per layer learns far less than LoRA: the loss falls, the copies
//! stay wrong on this tiny random model). Training moves only the vectors; the adapter is saved, reloaded onto a
//! fresh base, and merged, and each copy must give the trained model's logits.

use anyhow::{Context, Result};
use peft::burn::module::Module;
use peft::burn::optim::{AdamWConfig, GradientsParams};
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::models::t5::T5ForConditionalGeneration;
use peft::{Ia3Config, PeftConfig, PeftModel, TaskType, get_peft_model};
use std::path::PathBuf;

use crate::common::{Rng, max_abs_diff, progress_bar, scalar};

/// Which model, where the adapter goes, how long to train.
#[derive(Clone, Debug)]
pub struct Options {
    /// A T5 folder.
    pub model_dir: PathBuf,
    /// The adapter folder written.
    pub out_dir: PathBuf,
    /// AdamW steps.
    pub steps: usize,
}

impl Options {
    /// The guide's settings (fewer steps in smoke mode).
    pub fn new(model_dir: impl Into<PathBuf>, out_dir: impl Into<PathBuf>, smoke: bool) -> Self {
        Options { model_dir: model_dir.into(), out_dir: out_dir.into(), steps: if smoke { 20 } else { 300 } }
    }
}

/// What the run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// `print_trainable_parameters`'s line.
    pub trainable: String,
    /// The targets the defaults chose, and the feed-forward ones among them.
    pub targets: (Vec<String>, Vec<String>),
    /// The first and last training loss.
    pub loss: (f32, f32),
    /// The mean loss on held-out rows, before and after training.
    pub held_out_loss: (f32, f32),
    /// Largest logit difference of the reloaded adapter, and of the merged model, to the trained one.
    pub reload_diff: f32,
    /// See `reload_diff`.
    pub merge_diff: f32,
}

/// Rows of 5 random tokens, and the same tokens followed by eos as labels (also the copy task of
/// [`crate::prefix_tuning_seq2seq`]).
pub(crate) fn copy_rows(rng: &mut Rng, rows: usize, vocab: usize, eos: u32) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let sources: Vec<Vec<u32>> = (0..rows).map(|_| (0..5).map(|_| 3 + rng.below(vocab - 3) as u32).collect()).collect();
    let labels = sources.iter().map(|s| s.iter().copied().chain([eos]).collect()).collect();
    (sources, labels)
}

/// `rows` (all of one length) as a `[rows, len]` id tensor.
pub(crate) fn tensor(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let width = rows.first().map_or(0, Vec::len);
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device)
}

/// The seq2seq loss of `model` on `(sources, labels)`.
fn loss_on(model: &T5ForConditionalGeneration, sources: &[Vec<u32>], labels: &[Vec<u32>], device: &Device) -> Result<f32> {
    scalar(model.forward_with_loss(tensor(sources, device), None, tensor(labels, device)).1)
}

/// Runs the guide.
pub fn run(options: &Options) -> Result<Report> {
    let device = peft::device::default_device()?.autodiff();
    // T5's dropout (0.1) draws from the device's generator: seeded, the run repeats.
    device.seed(5);
    let load = |device: &Device| {
        T5ForConditionalGeneration::from_pretrained(&options.model_dir, device).with_context(|| format!("loading {}", options.model_dir.display()))
    };
    let base = load(&device)?;
    let eos = base.config.eos_token_ids().first().copied().unwrap_or(1);
    let vocab = base.config.vocab_size.min(96);
    let mut model = get_peft_model(base, Ia3Config::default().with_task_type(TaskType::Seq2SeqLm))?;
    let trainable = model.trainable_parameters_line();
    let PeftConfig::Ia3(config) = model.peft_config("default")? else { anyhow::bail!("an IA3 config") };
    let targets = (config.target_modules.names().to_vec(), config.feedforward_modules.names().to_vec());

    let mut rng = Rng::new(11);
    let (sources, labels) = copy_rows(&mut rng, 16, vocab, eos);
    let (train_src, train_tgt) = (tensor(&sources[..12], &device), tensor(&labels[..12], &device));
    let (held_out, held_out_labels) = (&sources[12..], &labels[12..]);
    let plain = device.clone().inner();
    let before = loss_on(model.valid().model(), held_out, held_out_labels, &plain)?;
    let mut optim = AdamWConfig::new().init();
    let bar = progress_bar(options.steps, true)?;
    let mut losses = Vec::with_capacity(options.steps);
    for _ in 0..options.steps {
        let inputs = peft::ModelInputs::ids(train_src.clone()).with_labels(peft::Labels::Tokens(train_tgt.clone()));
        let loss = model.forward(inputs)?.loss.context("labels give a loss")?;
        losses.push(scalar(loss.clone())?);
        bar.set_message(format!("{:.3}", losses[losses.len() - 1]));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // (IA)³ vectors start at one and need a larger step than LoRA's factors.
        model = optim.step(1e-1, model, grads);
        bar.inc(1);
    }
    bar.finish_and_clear();
    model.save_pretrained(&options.out_dir)?;

    let trained = model.valid();
    let after = loss_on(trained.model(), held_out, held_out_labels, &plain)?;
    let ids = tensor(held_out, &plain);
    let decoder = tensor(held_out_labels, &plain);
    let logits = |m: &T5ForConditionalGeneration| m.forward(ids.clone(), None, decoder.clone());
    let reference = logits(trained.model());
    let reloaded = PeftModel::from_pretrained(load(&plain)?, &options.out_dir)?;
    let reload_diff = max_abs_diff(logits(reloaded.model()), reference.clone())?;
    let merge_diff = max_abs_diff(logits(&trained.merge_and_unload()?), reference)?;
    Ok(Report {
        trainable,
        targets,
        loss: (losses.first().copied().unwrap_or(f32::NAN), losses.last().copied().unwrap_or(f32::NAN)),
        held_out_loss: (before, after),
        reload_diff,
        merge_diff,
    })
}
