//! Prefix tuning on a sequence-to-sequence model, as the PEFT guide *Prefix tuning for
//! conditional generation* does with T5: `PrefixTuningConfig(task_type=SEQ_2_SEQ_LM,
//! num_virtual_tokens=20)`.
//!
//! Twenty learned key/value pairs per layer are attended to by every attention of the encoder and
//! of the decoder as if they were already-seen tokens; nothing of the model changes. The model is
//! a T5 or mT5 folder (default: the tiny `fixtures/models/t5`), the task is the quicktour's: copy
//! the source sentence. The held-out loss is measured before and after through
//! `PeftModel::forward`, the trained model generates (greedy, through the prefix), and the saved
//! adapter is reloaded onto a fresh base and must give the trained model's logits and generations.
//! Prefix tuning cannot merge.

use anyhow::{Context, Result};
use peft::burn::module::Module;
use peft::burn::optim::{AdamWConfig, GradientsParams};
use peft::burn::tensor::{Device, Tensor};
use peft::models::generation::GenerationConfig;
use peft::models::t5::T5ForConditionalGeneration;
use peft::{Labels, ModelInputs, PeftModel, PrefixTuningConfig, TaskType, get_peft_model};
use std::path::PathBuf;

use crate::common::{Rng, max_abs_diff, progress_bar, scalar};
use crate::ia3_seq2seq::{copy_rows, tensor};

/// Which model, where the adapter goes, how long to train.
#[derive(Clone, Debug)]
pub struct Options {
    /// A T5 or mT5 folder.
    pub model_dir: PathBuf,
    /// The adapter folder written.
    pub out_dir: PathBuf,
    /// AdamW steps.
    pub steps: usize,
}

impl Options {
    /// The guide's settings, at its learning rate 1e-2 (60 steps in smoke mode).
    pub fn new(model_dir: impl Into<PathBuf>, out_dir: impl Into<PathBuf>, smoke: bool) -> Self {
        Options { model_dir: model_dir.into(), out_dir: out_dir.into(), steps: if smoke { 60 } else { 300 } }
    }
}

/// What the run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// `print_trainable_parameters`'s line.
    pub trainable: String,
    /// The first and last training loss.
    pub loss: (f32, f32),
    /// The mean loss on held-out rows, before and after training.
    pub held_out_loss: (f32, f32),
    /// Held-out sources, and what the trained model generates for them.
    pub sources: Vec<Vec<u32>>,
    /// See `sources`.
    pub generated: Vec<Vec<u32>>,
    /// Largest logit difference of the reloaded adapter to the trained model.
    pub reload_diff: f32,
    /// Whether the reloaded adapter generates the same tokens.
    pub reload_generates_the_same: bool,
}

/// The loss of `model` (through its prefix) on `(sources, labels)`.
fn loss_on(model: &PeftModel<T5ForConditionalGeneration>, sources: &[Vec<u32>], labels: &[Vec<u32>], device: &Device) -> Result<f32> {
    let inputs = ModelInputs::ids(tensor(sources, device)).with_labels(Labels::Tokens(tensor(labels, device)));
    scalar(model.forward(inputs)?.loss.context("labels give a loss")?)
}

/// Runs the guide.
pub fn run(options: &Options) -> Result<Report> {
    let device = peft::device::default_device()?.autodiff();
    // T5's dropout (0.1) and the fresh prefix draw from the device's generator: seeded, the run repeats.
    device.seed(5);
    let load = |device: &Device| {
        T5ForConditionalGeneration::from_pretrained(&options.model_dir, device).with_context(|| format!("loading {}", options.model_dir.display()))
    };
    let base = load(&device)?;
    let eos = base.config.eos_token_ids().first().copied().unwrap_or(1);
    let vocab = base.config.vocab_size.min(96);
    let mut model = get_peft_model(base, PrefixTuningConfig::new(20).with_task_type(TaskType::Seq2SeqLm))?;
    let trainable = model.trainable_parameters_line();

    let mut rng = Rng::new(11);
    let (sources, labels) = copy_rows(&mut rng, 16, vocab, eos);
    let (train_src, train_tgt) = (tensor(&sources[..12], &device), tensor(&labels[..12], &device));
    let (held_out, held_out_labels) = (&sources[12..], &labels[12..]);
    let plain = device.clone().inner();
    let before = loss_on(&model.valid(), held_out, held_out_labels, &plain)?;
    let mut optim = AdamWConfig::new().init();
    let bar = progress_bar(options.steps, true)?;
    let mut losses = Vec::with_capacity(options.steps);
    for _ in 0..options.steps {
        let inputs = ModelInputs::ids(train_src.clone()).with_labels(Labels::Tokens(train_tgt.clone()));
        let loss = model.forward(inputs)?.loss.context("labels give a loss")?;
        losses.push(scalar(loss.clone())?);
        bar.set_message(format!("{:.3}", losses[losses.len() - 1]));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
        bar.inc(1);
    }
    bar.finish_and_clear();
    model.save_pretrained(&options.out_dir)?;

    let trained = model.valid();
    let after = loss_on(&trained, held_out, held_out_labels, &plain)?;
    let logits = |m: &PeftModel<T5ForConditionalGeneration>| -> Result<Tensor<3>> {
        let inputs = ModelInputs { decoder_input_ids: Some(tensor(held_out_labels, &plain)), ..ModelInputs::ids(tensor(held_out, &plain)) };
        Ok(m.forward(inputs)?.logits.rank3()?)
    };
    let mut generation = GenerationConfig::greedy(6);
    generation.eos_token_id = vec![eos];
    let generate = |m: &PeftModel<T5ForConditionalGeneration>| -> Result<Vec<Vec<u32>>> { Ok(m.generate(ModelInputs::ids(tensor(held_out, &plain)), &generation)?.tokens) };
    let generated = generate(&trained)?;
    let reloaded = PeftModel::from_pretrained(load(&plain)?, &options.out_dir)?;
    let reload_diff = max_abs_diff(logits(&reloaded)?, logits(&trained)?)?;
    let reload_generates_the_same = generate(&reloaded)? == generated;
    Ok(Report {
        trainable,
        loss: (losses.first().copied().unwrap_or(f32::NAN), losses.last().copied().unwrap_or(f32::NAN)),
        held_out_loss: (before, after),
        sources: held_out.to_vec(),
        generated,
        reload_diff,
        reload_generates_the_same,
    })
}
