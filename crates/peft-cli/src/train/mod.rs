//! Training loops shared by `peft train` and `peft demo`.

pub mod batch;
pub mod causal;
pub mod checkpoint;
pub mod classify;
pub mod method;
pub mod save;
pub mod schedule;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use peft::burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams};
use peft::burn::tensor::Tensor;
use peft::burn::module::Module;
use peft::{AdapterSites, PeftConfig, PeftModel};
use std::path::PathBuf;

use batch::Batches;
use schedule::{LrScheduler, Schedule};

/// How long and how fast to train.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per forward pass (a micro-batch).
    pub batch_size: usize,
    /// Micro-batches whose gradients add up to one optimizer step (1: none); an optimizer step
    /// then sees `batch_size · grad_accum` examples, as transformers' Trainer counts them.
    pub grad_accum: usize,
    /// AdamW learning rate (the peak of the schedule).
    pub lr: f64,
    /// How the rate moves over the steps.
    pub scheduler: LrScheduler,
    /// Steps of linear warm-up from 0 to `lr`.
    pub warmup_steps: usize,
    /// AdamW weight decay (torch's default 0.01).
    pub weight_decay: f32,
    /// Seed of the data order.
    pub seed: u64,
    /// Evaluate on the held-out data every this many steps (0: never).
    pub eval_every: usize,
    /// Write a checkpoint into `checkpoint_output` every this many steps (0: never).
    pub save_every: usize,
    /// The folder that receives `checkpoint-N` folders.
    pub checkpoint_output: Option<PathBuf>,
    /// Continue from this checkpoint (a `checkpoint-N` folder, or an output folder for its latest).
    pub resume: Option<PathBuf>,
}

/// One evaluation on the held-out data during training.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalPoint {
    /// Optimizer steps done when it was measured.
    pub step: usize,
    /// The mean loss on the held-out data.
    pub loss: f32,
    /// The share of held-out examples predicted right (classifiers only).
    pub accuracy: Option<f32>,
}

impl TrainOptions {
    /// `steps` steps of `batch_size` at a constant `lr`, no accumulation, no evaluation; weight
    /// decay 0.01 (torch's default).
    pub fn new(steps: usize, batch_size: usize, lr: f64, seed: u64) -> Self {
        TrainOptions {
            steps,
            batch_size,
            grad_accum: 1,
            lr,
            scheduler: LrScheduler::Constant,
            warmup_steps: 0,
            weight_decay: 0.01,
            seed,
            eval_every: 0,
            save_every: 0,
            checkpoint_output: None,
            resume: None,
        }
    }

    /// Whether dropout is reseeded every step (see [`checkpoint`]): with checkpoints or a resume.
    fn reseeds(&self) -> bool {
        self.save_every > 0 || self.resume.is_some()
    }

    /// The learning-rate schedule of the run.
    pub fn schedule(&self) -> Schedule {
        Schedule { kind: self.scheduler, base_lr: self.lr, warmup: self.warmup_steps, total: self.steps }
    }
}

impl EvalPoint {
    /// `loss 0.512 acc 0.810` (the accuracy when there is one).
    pub fn describe(&self) -> String {
        match self.accuracy {
            Some(a) => format!("loss {:.3} acc {a:.3}", self.loss),
            None => format!("loss {:.3}", self.loss),
        }
    }
}

/// What a training run measured: the loss of every step and the evaluations.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The training loss of each step (`losses[i]` is step `i + 1`).
    pub losses: Vec<f32>,
    /// The evaluations every `eval_every` steps, in step order.
    pub evals: Vec<EvalPoint>,
}

/// Measures a model on held-out data: `(mean loss, accuracy if a classifier)`.
pub type Evaluate<'a, M> = dyn FnMut(&PeftModel<M>) -> Result<(f32, Option<f32>)> + 'a;

/// A progress bar showing the running mean loss.
pub fn loss_bar(steps: usize, what: &str) -> Result<ProgressBar> {
    let style = ProgressStyle::with_template(&format!("{what} {{bar:30}} {{pos}}/{{len}} loss {{msg}} [{{elapsed}} < {{eta}}]"))?;
    Ok(ProgressBar::new(steps as u64).with_style(style))
}

/// The one value of a loss tensor.
pub fn scalar(t: Tensor<1>) -> Result<f32> {
    let values: Vec<f32> = t.into_data().convert::<f32>().try_to_vec().map_err(|e| anyhow::anyhow!("cannot read the loss: {e:?}"))?;
    values.first().copied().context("the loss is an empty tensor")
}

/// The mean of the last (up to) 20 losses, for the progress bar.
pub fn running_mean(losses: &[f32]) -> f32 {
    let tail = &losses[losses.len().saturating_sub(20)..];
    tail.iter().sum::<f32>() / tail.len().max(1) as f32
}

/// The progress bar's message: the running mean loss, then the latest evaluation.
fn progress_message(losses: &[f32], eval: Option<&EvalPoint>) -> String {
    match eval {
        Some(e) => format!("{:.3} | eval @{}: {}", running_mean(losses), e.step, e.describe()),
        None => format!("{:.3}", running_mean(losses)),
    }
}

/// Trains the model's trainable parameters with AdamW: each step draws `grad_accum` batches of
/// example indices (shuffled passes over `examples`), adds up the gradients of
/// `loss(model, batch) / grad_accum` over them and steps at the schedule's rate; returns the
/// (mean) loss of every step and, with `evaluate` and `options.eval_every > 0`, an evaluation
/// every `eval_every` steps (shown in the progress bar). The model must live on an autodiff
/// device. With `save_every`, a checkpoint every that many steps; with `resume`, the run goes on
/// from a checkpoint exactly as it would have without the interruption (see [`checkpoint`]).
///
/// With an AdaLoRA adapter, each step ends with its rank allocation (`update_and_allocate`,
/// after the optimizer step as in the Python library), so the saved adapter holds the ranks the
/// allocator kept.
pub fn fit<M: AdapterSites>(
    mut model: PeftModel<M>,
    examples: usize,
    options: &TrainOptions,
    mut loss: impl FnMut(&PeftModel<M>, &[usize]) -> Result<Tensor<1>>,
    mut evaluate: Option<&mut Evaluate<'_, M>>,
) -> Result<(PeftModel<M>, History)> {
    // torch's AdamW epsilon (1e-8; Burn's default is 1e-5), so runs match the Python library's:
    // LoRA's small early gradients would otherwise take damped steps.
    let mut optimizer = AdamWConfig::new().with_weight_decay(options.weight_decay).with_epsilon(1e-8).init();
    let mut batches = Batches::new(examples, options.batch_size, options.seed);
    let mut losses = Vec::with_capacity(options.steps);
    let mut evals: Vec<EvalPoint> = Vec::new();
    let adalora = model.active_adapters().iter().any(|n| matches!(model.peft_config(n), Ok(PeftConfig::AdaLora(_))));
    if adalora && options.reseeds() {
        anyhow::bail!("checkpoints do not hold AdaLoRA's rank-allocation state yet; train AdaLoRA without --save-every and --resume");
    }
    if let Some(path) = &options.resume {
        let resume = checkpoint::Resume::read(path, options)?;
        (model, optimizer) = resume.restore(model, optimizer)?;
        // The data order is a function of the seed and the batches drawn: draw the done ones.
        for _ in 0..resume.state.step * options.grad_accum.max(1) {
            batches.next_batch();
        }
        losses = resume.state.losses;
        evals = resume.state.evals.into_iter().map(EvalPoint::from).collect();
        println!("resuming from {} ({} of {} steps done)", resume.dir.display(), losses.len(), options.steps);
    }
    let device = model.devices().into_iter().next().context("the model has no parameters to train")?;
    let bar = loss_bar(options.steps, "training")?;
    bar.set_position(losses.len() as u64);
    let schedule = options.schedule();
    for step in losses.len()..options.steps {
        if options.reseeds() {
            device.seed(checkpoint::step_seed(options.seed, step));
        }
        let (step_loss, grads) = accumulated_gradients(&model, options.grad_accum, || loss(&model, &batches.next_batch()))?;
        losses.push(step_loss);
        bar.set_message(progress_message(&losses, evals.last()));
        // The optimizer consumes the gradients; the allocator needs the AdaLoRA factors' after it.
        let kept = adalora.then(|| model.copy_adalora_gradients(&grads));
        model = optimizer.step(schedule.lr(step), model, grads);
        if let Some(kept) = kept {
            model.update_and_allocate(step, &kept)?;
        }
        let done = step + 1;
        if let Some(evaluate) = evaluate.as_deref_mut().filter(|_| options.eval_every > 0 && done % options.eval_every == 0) {
            // Evaluation runs in inference mode (no dropout), so it draws nothing from the
            // seeded generator and a run with --eval-every trains exactly as one without.
            let (eval_loss, accuracy) = evaluate(&model)?;
            evals.push(EvalPoint { step: done, loss: eval_loss, accuracy });
            bar.set_message(progress_message(&losses, evals.last()));
        }
        if let Some(output) = options.checkpoint_output.as_deref().filter(|_| options.save_every > 0 && done % options.save_every == 0) {
            checkpoint::save(&model, &optimizer, options, output, &losses, &evals)?;
        }
        bar.inc(1);
    }
    bar.finish();
    Ok((model, History { losses, evals }))
}

/// The mean loss and the summed gradients of `micro_batches` losses, each scaled by
/// `1 / micro_batches` so that the sum is the gradient of their mean (one loss is used as it is).
fn accumulated_gradients<M: AdapterSites>(
    model: &PeftModel<M>,
    micro_batches: usize,
    mut next_loss: impl FnMut() -> Result<Tensor<1>>,
) -> Result<(f32, GradientsParams)> {
    if micro_batches <= 1 {
        let loss = next_loss()?;
        let value = scalar(loss.clone())?;
        return Ok((value, GradientsParams::from_grads(loss.backward(), model)));
    }
    let mut accumulator = GradientsAccumulator::new();
    let mut total = 0.0;
    for _ in 0..micro_batches {
        let loss = next_loss()?;
        total += scalar(loss.clone())?;
        let scaled = loss / micro_batches as f32;
        accumulator.accumulate(model, GradientsParams::from_grads(scaled.backward(), model));
    }
    Ok((total / micro_batches as f32, accumulator.grads()))
}
