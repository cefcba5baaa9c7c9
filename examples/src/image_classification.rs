//! The PEFT guide "Image classification using LoRA", on a synthetic data set.
//!
//! A ViT classifier gets LoRA on the attention's query and value projections (`q_proj`, `v_proj`
//! in transformers 5) and trains its `classifier` in full (`modules_to_save`), as the guide does
//! for food101. The images are seeded noise tinted by class: class `c` brightens colour channel
//! `c`, so a few AdamW steps lift the accuracy from chance. The adapter is then saved, loaded
//! back onto a fresh base, and merged, and each copy must give the trained model's logits.

use anyhow::{Context, Result, ensure};
use peft::burn::module::Module;
use peft::burn::optim::{AdamWConfig, GradientsParams};
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::models::vit::{ViTConfig, ViTForImageClassification};
use peft::{LoraConfig, PeftModel, get_peft_model};
use std::path::PathBuf;

use crate::common::{Rng, floats, max_abs_diff, progress_bar, scalar};

/// What to train on and for how long.
#[derive(Clone, Debug)]
pub struct Options {
    /// A transformers `ViTForImageClassification` folder.
    pub model_dir: PathBuf,
    /// Where the adapter is saved.
    pub out_dir: PathBuf,
    /// AdamW steps, one batch each.
    pub steps: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Distinct training batches (cycled through).
    pub train_batches: usize,
    /// Held-out images the accuracy is measured on.
    pub eval_images: usize,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// Whether to draw the progress bar.
    pub show_progress: bool,
}

impl Options {
    /// The guide's settings; `smoke` is a few seconds' run for CI.
    pub fn new(model_dir: impl Into<PathBuf>, out_dir: impl Into<PathBuf>, smoke: bool) -> Self {
        Options {
            model_dir: model_dir.into(),
            out_dir: out_dir.into(),
            steps: if smoke { 12 } else { 60 },
            batch_size: if smoke { 8 } else { 16 },
            train_batches: if smoke { 2 } else { 4 },
            eval_images: if smoke { 12 } else { 48 },
            learning_rate: 5e-3,
            show_progress: !smoke,
        }
    }
}

/// What the run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// `print_trainable_parameters`'s line.
    pub trainable: String,
    /// Classes in the synthetic data set.
    pub classes: usize,
    /// Training loss at the first and the last step.
    pub loss: (f32, f32),
    /// Held-out accuracy before training (chance level: `1 / classes`).
    pub accuracy_before: f32,
    /// Held-out accuracy after training.
    pub accuracy_after: f32,
    /// Largest logit difference between the trained model and the base (adapter disabled).
    pub adapter_effect: f32,
    /// Largest logit difference between the trained model and the adapter loaded from disk.
    pub reload_diff: f32,
    /// Largest logit difference between the trained model and the merged one.
    pub merge_diff: f32,
}

/// Trains, saves, reloads and merges; see the module docs.
///
/// # Errors
/// Zero batch or eval sizes, loading the model, a model with fewer than two labels or channels, saving the adapter, and
/// reload or merge outputs further than `1e-4` from the trained model's.
pub fn run(options: &Options) -> Result<Report> {
    ensure!(options.batch_size > 0 && options.eval_images > 0, "batch_size and eval_images must be at least 1");
    let device = peft::device::default_device()?.autodiff();
    let dir = &options.model_dir;
    let vit = ViTConfig::from_file(dir).with_context(|| format!("reading {}", dir.display()))?;
    // Colour tells the classes apart, so there can be at most one class per channel.
    let classes = vit.num_labels.min(vit.num_channels);
    ensure!(classes >= 2, "{}: the synthetic colour classes need at least 2 labels and 2 channels", dir.display());
    let data = Images { channels: vit.num_channels, size: vit.image_size.dims(), classes };

    let base = ViTForImageClassification::from_pretrained(dir, &device).with_context(|| format!("loading {}", dir.display()))?;
    let config = LoraConfig::new(8)
        .with_lora_alpha(16.0)
        .with_lora_dropout(0.1)
        .with_target_modules(["q_proj", "v_proj"])
        .with_modules_to_save(["classifier"]);
    let mut model = get_peft_model(base, config)?;
    model.print_trainable_parameters();
    let trainable = model.trainable_parameters_line();

    let mut rng = Rng::new(7);
    let batches: Vec<_> = (0..options.train_batches.max(1)).map(|_| data.batch(options.batch_size, &mut rng, &device)).collect();
    let (eval_pixels, eval_labels) = data.batch(options.eval_images, &mut Rng::new(1234), &device);
    let accuracy = |m: &PeftModel<ViTForImageClassification>| -> Result<f32> {
        accuracy(m.valid().model().forward(eval_pixels.clone())?, eval_labels.clone())
    };
    let accuracy_before = accuracy(&model)?;

    let bar = progress_bar(options.steps, options.show_progress)?;
    let mut optim = AdamWConfig::new().init();
    let mut losses = Vec::with_capacity(options.steps);
    for step in 0..options.steps {
        let (pixels, labels) = batches[step % batches.len()].clone();
        // The classification loss through every active adapter (PeftModel::forward).
        let inputs = peft::ModelInputs { pixel_values: Some(pixels), labels: Some(peft::Labels::Sequence(labels)), ..Default::default() };
        let loss = model.forward(inputs)?.loss.context("labels give a loss")?;
        losses.push(scalar(loss.clone())?);
        bar.set_message(format!("{:.3}", losses[step]));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(options.learning_rate, model, grads);
        bar.inc(1);
    }
    bar.finish();
    let accuracy_after = accuracy(&model)?;

    let mut trained_model = model.valid();
    let trained = trained_model.model().forward(eval_pixels.clone())?;
    let adapter_effect = max_abs_diff(trained.clone(), trained_model.with_adapters_disabled(|m| m.forward(eval_pixels.clone()))?)?;
    model.save_pretrained(&options.out_dir)?;
    let fresh = ViTForImageClassification::from_pretrained(dir, &device)?;
    let reloaded = PeftModel::from_pretrained(fresh, &options.out_dir)?.valid();
    let reload_diff = max_abs_diff(trained.clone(), reloaded.model().forward(eval_pixels.clone())?)?;
    ensure!(reload_diff < 1e-4, "the reloaded adapter gives other logits (max diff {reload_diff})");
    let merged = reloaded.merge_and_unload()?;
    let merge_diff = max_abs_diff(trained, merged.forward(eval_pixels)?)?;
    ensure!(merge_diff < 1e-4, "the merged model gives other logits (max diff {merge_diff})");

    let first = losses.first().copied().unwrap_or(f32::NAN);
    let last = losses.last().copied().unwrap_or(f32::NAN);
    Ok(Report { trainable, classes, loss: (first, last), accuracy_before, accuracy_after, adapter_effect, reload_diff, merge_diff })
}

/// The synthetic data set: noise in `[-0.5, 0.5)`, class `c` adding 1 to channel `c`.
struct Images {
    channels: usize,
    size: [usize; 2],
    classes: usize,
}

impl Images {
    /// `n` images and their labels, classes drawn uniformly.
    ///
    /// # Shapes
    /// - output: `([n, channels, height, width], [n])`
    fn batch(&self, n: usize, rng: &mut Rng, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let [h, w] = self.size;
        let mut pixels = Vec::with_capacity(n * self.channels * h * w);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let class = rng.below(self.classes);
            labels.push(class as i64);
            for channel in 0..self.channels {
                let tint = if channel == class { 1.0 } else { 0.0 };
                pixels.extend((0..h * w).map(|_| rng.uniform() - 0.5 + tint));
            }
        }
        let pixels = Tensor::from_data(TensorData::new(pixels, [n, self.channels, h, w]), device);
        (pixels, Tensor::from_data(TensorData::new(labels, [n]), device))
    }
}

/// The share of rows whose largest logit is at the label.
///
/// # Shapes
/// - `logits`: `[n, classes]`, `labels`: `[n]`
fn accuracy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Result<f32> {
    let n = labels.dims()[0];
    let hits = logits.argmax(1).reshape([n]).equal(labels).float();
    Ok(floats(hits)?.iter().sum::<f32>() / n.max(1) as f32)
}
