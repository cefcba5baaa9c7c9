//! P-tuning on the real MiniLM-L6 encoder classifying tweets, as the PEFT guide *P-tuning for
//! sequence classification* does: `PromptEncoderConfig(task_type=SEQ_CLS, num_virtual_tokens=20,
//! encoder_hidden_size=128)`.
//!
//! Twenty virtual tokens come out of a prompt encoder (an MLP over learned embeddings) and go
//! before every tweet; with `task_type=SEQ_CLS` the fresh classification head trains along
//! (`modules_to_save`), as in the Python library. The held-out accuracy is measured before and
//! after; the saved adapter (the encoder's output table and the head) is reloaded onto a fresh
//! base whose head was drawn differently and must give the trained model's logits. P-tuning cannot
//! merge.

use anyhow::Result;
use peft::burn::module::Module;
use peft::{PromptEncoderConfig, TaskType, get_peft_model};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::minilm::{Run, Task, adamw, finish, majority_share, scores};

/// `peft demo`'s task and steps (150 of 16 tweets) at the guide's learning rate, 1e-3; 8 steps
/// of 8 in smoke mode.
pub fn options(assets: &Path, out_dir: impl Into<PathBuf>, smoke: bool) -> Run {
    Run::new(assets, out_dir, smoke, 1e-3)
}

/// What the run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// `print_trainable_parameters`'s line.
    pub trainable: String,
    /// The first and last training loss.
    pub loss: (f32, f32),
    /// Held-out `(loss, accuracy)` of the fresh classifier and of the trained one.
    pub before: (f32, f32),
    /// See `before`.
    pub after: (f32, f32),
    /// The held-out share of the most common class.
    pub majority: f32,
    /// Seconds spent training.
    pub train_secs: f32,
    /// Largest logit difference of the reloaded adapter to the trained one.
    pub reload_diff: f32,
}

/// Runs the guide.
pub fn run(options: &Run) -> Result<Report> {
    let device = peft::device::default_device()?.autodiff();
    // The fresh head, the prompt encoder and dropout draw from the device's generator.
    device.seed(0);
    let plain = device.clone().inner();
    let task = Task::load(&options.assets, options.train, options.eval)?;

    let config = PromptEncoderConfig::new(20).with_encoder_hidden_size(128).with_task_type(TaskType::SeqCls);
    let model = get_peft_model(task.base(&device)?, config)?;
    let trainable = model.trainable_parameters_line();
    let before = scores(task.eval_logits(&model.valid(), &plain)?, &task.eval)?;

    let mut optim = adamw();
    let lr = options.lr;
    let started = Instant::now();
    let (model, losses) = task.train(model, options.steps, options.batch, &device, |model, _, grads| Ok(optim.step(lr, model, grads)))?;
    let train_secs = started.elapsed().as_secs_f32();

    let done = finish(&task, model.valid(), &options.out_dir, &plain, false)?;
    Ok(Report {
        trainable,
        loss: (losses.first().copied().unwrap_or(f32::NAN), losses.last().copied().unwrap_or(f32::NAN)),
        before,
        after: done.scores,
        majority: majority_share(&task.eval),
        train_secs,
        reload_diff: done.reload_diff,
    })
}
