//! AdaLoRA on the real MiniLM-L6 encoder classifying tweets: the ranks start at `init_r` 12 on
//! every adapted matrix and the allocator moves them to where they matter, down to an average of
//! `target_r` 8.
//!
//! `AdaLoraConfig` with the Python library's default targets for BERT (`query`, `value`), a
//! schedule over the run (`tinit` warm-up steps at full rank, a cubic fall of the budget every
//! `deltaT` steps, `tfinal` steps at the final ranks) and the orthogonality penalty, which
//! `PeftModel::forward` adds to the loss. After every optimizer step the loop calls
//! `update_and_allocate` with the step's gradients (kept with `copy_adalora_gradients`, as the
//! optimizer consumes them). The report gives the ranks each matrix kept and the held-out
//! accuracy before and after; the saved adapter (cut to the kept ranks, with its
//! `rank_pattern`) is reloaded onto a fresh base and merged, and both must give the trained
//! model's logits.

use anyhow::{Context, Result};
use peft::burn::module::Module;
use peft::{AdaLoraConfig, PeftConfig, TaskType, get_peft_model};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::common::scalar;
use crate::minilm::{Run, Task, adamw, finish, majority_share, scores};

/// Where the assets are, how long to train, and the allocator's schedule.
#[derive(Clone, Debug)]
pub struct Options {
    /// The task and budget (`steps` is AdaLoRA's `total_step`).
    pub run: Run,
    /// The adapter's config (the schedule is laid out over `run.steps`).
    pub config: AdaLoraConfig,
}

impl Options {
    /// The guide's settings: 150 steps of 16 tweets as `peft demo` trains LoRA, ranks 12 → 8
    /// with 30 warm-up and 30 final steps, a new budget every 10 steps; 8 steps of 8 in smoke mode.
    pub fn new(assets: &Path, out_dir: impl Into<PathBuf>, smoke: bool) -> Self {
        let run = Run::new(assets, out_dir, smoke, 2e-3);
        let steps = run.steps;
        let (tinit, tfinal, delta_t) = if smoke { (2, 2, 2) } else { (30, 30, 10) };
        let config = AdaLoraConfig::new(steps)
            .with_init_r(12)
            .with_target_r(8)
            .with_tinit(tinit)
            .with_tfinal(tfinal)
            .with_delta_t(delta_t)
            .with_lora_alpha(32.0)
            .with_lora_dropout(0.1)
            .with_orth_reg_weight(0.5)
            .with_task_type(TaskType::SeqCls);
        Options { run, config }
    }
}

/// What the run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// `print_trainable_parameters`'s line at the start (every matrix at `init_r`).
    pub trainable: String,
    /// The first and last training loss (cross-entropy plus the orthogonality penalty).
    pub loss: (f32, f32),
    /// The weighted orthogonality penalty before and after training.
    pub orth_reg: (f32, f32),
    /// Held-out `(loss, accuracy)` of the fresh classifier and of the trained one.
    pub before: (f32, f32),
    /// See `before`.
    pub after: (f32, f32),
    /// The held-out share of the most common class.
    pub majority: f32,
    /// The ranks kept per adapted matrix (its `rank_pattern` key without `.lora_E`), in model order.
    pub ranks: Vec<(String, usize)>,
    /// The budget the schedule ends at (`target_r` times the number of matrices).
    pub target_budget: usize,
    /// Seconds spent training.
    pub train_secs: f32,
    /// Largest logit difference of the reloaded adapter, and of the merged model, to the trained one.
    pub reload_diff: f32,
    /// See `reload_diff`.
    pub merge_diff: f32,
}

/// Runs the guide.
pub fn run(options: &Options) -> Result<Report> {
    let device = peft::device::default_device()?.autodiff();
    // The fresh head, the factors' initialisation and dropout draw from the device's generator.
    device.seed(0);
    let plain = device.clone().inner();
    let task = Task::load(&options.run.assets, options.run.train, options.run.eval)?;

    let mut config = options.config.clone();
    config.total_step = Some(options.run.steps);
    let model = get_peft_model(task.base(&device)?, config)?;
    let trainable = model.trainable_parameters_line();
    let orth_start = scalar(model.adalora_orth_reg().context("a training AdaLoRA adapter has a penalty")?)?;
    let before = scores(task.eval_logits(&model.valid(), &plain)?, &task.eval)?;

    let mut optim = adamw();
    let lr = options.run.lr;
    let started = Instant::now();
    let (model, losses) = task.train(model, options.run.steps, options.run.batch, &device, |mut model, step, grads| {
        // The optimizer consumes the gradients; the allocator needs the factors' own.
        let kept = model.copy_adalora_gradients(&grads);
        model = optim.step(lr, model, grads);
        model.update_and_allocate(step, &kept)?;
        Ok(model)
    })?;
    let train_secs = started.elapsed().as_secs_f32();
    let orth_end = scalar(model.adalora_orth_reg().context("a training AdaLoRA adapter has a penalty")?)?;
    let PeftConfig::AdaLora(trained_config) = model.peft_config("default")?.clone() else { anyhow::bail!("an AdaLoRA adapter") };
    let pattern = trained_config.rank_pattern.clone().context("the allocator wrote a rank pattern")?;
    let ranks: Vec<(String, usize)> =
        pattern.iter().map(|(key, kept)| (key.trim_end_matches(".lora_E").to_string(), kept.iter().filter(|&&k| k).count())).collect();
    let target_budget = trained_config.target_r * pattern.len();

    let done = finish(&task, model.valid(), &options.run.out_dir, &plain, true)?;
    Ok(Report {
        trainable,
        loss: (losses.first().copied().unwrap_or(f32::NAN), losses.last().copied().unwrap_or(f32::NAN)),
        orth_reg: (orth_start, orth_end),
        before,
        after: done.scores,
        majority: majority_share(&task.eval),
        ranks,
        target_budget,
        train_secs,
        reload_diff: done.reload_diff,
        merge_diff: done.merge_diff.unwrap_or(f32::NAN),
    })
}
