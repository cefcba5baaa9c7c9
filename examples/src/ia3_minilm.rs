//! (IA)³ on the real MiniLM-L6 encoder classifying tweets: `IA3Config(task_type=SEQ_CLS)` with
//! the Python library's default targets for BERT.
//!
//! The defaults are `key`, `value` and `output.dense`, with `output.dense` feed-forward: one
//! vector scales the keys and the values of every attention, and one scales the input of every
//! `output.dense` (the attention's output projection and the feed-forward's output layer both
//! end in that name). With the fresh classification head (`modules_to_save`) that is all that
//! trains. The held-out accuracy is measured before and after; the saved adapter is reloaded
//! onto a fresh base and merged, and both must give the trained model's logits.

use anyhow::Result;
use peft::burn::module::Module;
use peft::{Ia3Config, PeftConfig, TaskType, get_peft_model};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::minilm::{Run, Task, adamw, finish, majority_share, scores};

/// The guide's settings: `peft demo`'s budget (150 steps of 16 tweets) at a larger learning rate
/// than LoRA's, 5e-3 (the vectors start at one); 8 steps of 8 in smoke mode.
pub fn options(assets: &Path, out_dir: impl Into<PathBuf>, smoke: bool) -> Run {
    Run::new(assets, out_dir, smoke, 5e-3)
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
    /// Held-out `(loss, accuracy)` of the fresh classifier and of the trained one.
    pub before: (f32, f32),
    /// See `before`.
    pub after: (f32, f32),
    /// The held-out share of the most common class.
    pub majority: f32,
    /// Seconds spent training.
    pub train_secs: f32,
    /// Largest logit difference of the reloaded adapter, and of the merged model, to the trained one.
    pub reload_diff: f32,
    /// See `reload_diff`.
    pub merge_diff: f32,
}

/// Runs the guide.
pub fn run(options: &Run) -> Result<Report> {
    let device = peft::device::default_device()?.autodiff();
    // The fresh head and dropout draw from the device's generator.
    device.seed(0);
    let plain = device.clone().inner();
    let task = Task::load(&options.assets, options.train, options.eval)?;

    let model = get_peft_model(task.base(&device)?, Ia3Config::default().with_task_type(TaskType::SeqCls))?;
    let trainable = model.trainable_parameters_line();
    let PeftConfig::Ia3(config) = model.peft_config("default")? else { anyhow::bail!("an IA3 config") };
    let targets = (config.target_modules.names().to_vec(), config.feedforward_modules.names().to_vec());
    let before = scores(task.eval_logits(&model.valid(), &plain)?, &task.eval)?;

    let mut optim = adamw();
    let lr = options.lr;
    let started = Instant::now();
    let (model, losses) = task.train(model, options.steps, options.batch, &device, |model, _, grads| Ok(optim.step(lr, model, grads)))?;
    let train_secs = started.elapsed().as_secs_f32();

    let done = finish(&task, model.valid(), &options.out_dir, &plain, true)?;
    Ok(Report {
        trainable,
        targets,
        loss: (losses.first().copied().unwrap_or(f32::NAN), losses.last().copied().unwrap_or(f32::NAN)),
        before,
        after: done.scores,
        majority: majority_share(&task.eval),
        train_secs,
        reload_diff: done.reload_diff,
        merge_diff: done.merge_diff.unwrap_or(f32::NAN),
    })
}
