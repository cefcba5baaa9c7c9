//! Training loops shared by `peft train` and `peft demo`.

pub mod batch;
pub mod causal;
pub mod classify;
pub mod method;
pub mod save;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use peft::burn::optim::{AdamWConfig, GradientsParams};
use peft::burn::tensor::Tensor;
use peft::{AdapterSites, PeftConfig, PeftModel};

use batch::Batches;

/// How long and how fast to train.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay (torch's default 0.01).
    pub weight_decay: f32,
    /// Seed of the data order.
    pub seed: u64,
    /// Evaluate on the held-out data every this many steps (0: never).
    pub eval_every: usize,
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

/// Trains the model's trainable parameters with AdamW: each step draws a batch of example
/// indices (shuffled passes over `examples`) and minimises `loss(model, batch)`; returns the
/// loss of every step and, with `evaluate` and `options.eval_every > 0`, an evaluation every
/// `eval_every` steps (shown in the progress bar). The model must live on an autodiff device.
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
    let bar = loss_bar(options.steps, "training")?;
    let mut losses = Vec::with_capacity(options.steps);
    let mut evals: Vec<EvalPoint> = Vec::new();
    let adalora = model.active_adapters().iter().any(|n| matches!(model.peft_config(n), Ok(PeftConfig::AdaLora(_))));
    for step in 0..options.steps {
        let step_loss = loss(&model, &batches.next_batch())?;
        losses.push(scalar(step_loss.clone())?);
        bar.set_message(progress_message(&losses, evals.last()));
        let grads = GradientsParams::from_grads(step_loss.backward(), &model);
        // The optimizer consumes the gradients; the allocator needs the AdaLoRA factors' after it.
        let kept = adalora.then(|| model.copy_adalora_gradients(&grads));
        model = optimizer.step(options.lr, model, grads);
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
        bar.inc(1);
    }
    bar.finish();
    Ok((model, History { losses, evals }))
}
