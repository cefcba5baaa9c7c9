//! Training loops shared by `peft train` and `peft demo`.

pub mod batch;
pub mod causal;
pub mod classify;
pub mod method;

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
}

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

/// Trains the model's trainable parameters with AdamW: each step draws a batch of example
/// indices (shuffled passes over `examples`) and minimises `loss(model, batch)`; returns the
/// loss of every step. The model must live on an autodiff device.
///
/// With an AdaLoRA adapter, each step ends with its rank allocation (`update_and_allocate`,
/// after the optimizer step as in the Python library), so the saved adapter holds the ranks the
/// allocator kept.
pub fn fit<M: AdapterSites>(
    mut model: PeftModel<M>,
    examples: usize,
    options: &TrainOptions,
    mut loss: impl FnMut(&PeftModel<M>, &[usize]) -> Result<Tensor<1>>,
) -> Result<(PeftModel<M>, Vec<f32>)> {
    let mut optimizer = AdamWConfig::new().with_weight_decay(options.weight_decay).init();
    let mut batches = Batches::new(examples, options.batch_size, options.seed);
    let bar = loss_bar(options.steps, "training")?;
    let mut losses = Vec::with_capacity(options.steps);
    let adalora = model.active_adapters().iter().any(|n| matches!(model.peft_config(n), Ok(PeftConfig::AdaLora(_))));
    for step in 0..options.steps {
        let step_loss = loss(&model, &batches.next_batch())?;
        losses.push(scalar(step_loss.clone())?);
        bar.set_message(format!("{:.3}", running_mean(&losses)));
        let grads = GradientsParams::from_grads(step_loss.backward(), &model);
        // The optimizer consumes the gradients; the allocator needs the AdaLoRA factors' after it.
        let kept = adalora.then(|| model.copy_adalora_gradients(&grads));
        model = optimizer.step(options.lr, model, grads);
        if let Some(kept) = kept {
            model.update_and_allocate(step, &kept)?;
        }
        bar.inc(1);
    }
    bar.finish();
    Ok((model, losses))
}
