//! The PEFT guide "Semantic segmentation using LoRA", on a synthetic data set.
//!
//! A SegFormer gets LoRA on the attention's query and value projections with `bias =
//! "lora_only"` (their biases train too) and trains its `decode_head` in full
//! (`modules_to_save`), as the guide does for SceneParse150. The images are dark noise with one
//! bright square: white squares are class 1, red ones class 2 (when the head has 3 labels), the
//! rest class 0. Training uses the model's own per-pixel loss
//! ([`SegformerForSemanticSegmentation::forward_with_loss`]); pixel accuracy and mean IoU are
//! measured on held-out images before and after. Then the adapter is saved, reloaded and merged.
//!
//! The decode head's batch norm uses its running statistics in training too (our SegFormer's
//! batch norm is inference-only); it only normalises, so the head still learns.

use anyhow::{Context, Result, ensure};
use peft::burn::module::Module;
use peft::burn::optim::{AdamWConfig, GradientsParams};
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::models::segformer::{SegformerConfig, SegformerForSemanticSegmentation, resize_bilinear};
use peft::{Bias, LoraConfig, PeftModel, get_peft_model};
use std::path::PathBuf;

use crate::common::{Rng, max_abs_diff, progress_bar, scalar};

/// What to train on and for how long.
#[derive(Clone, Debug)]
pub struct Options {
    /// A transformers `SegformerForSemanticSegmentation` folder.
    pub model_dir: PathBuf,
    /// Where the adapter is saved.
    pub out_dir: PathBuf,
    /// Side of the square images.
    pub image_size: usize,
    /// AdamW steps, one batch each.
    pub steps: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Distinct training batches (cycled through).
    pub train_batches: usize,
    /// Held-out images the metrics are measured on.
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
            image_size: 32,
            steps: if smoke { 15 } else { 80 },
            batch_size: 8,
            train_batches: if smoke { 2 } else { 6 },
            eval_images: if smoke { 8 } else { 32 },
            learning_rate: 5e-3,
            show_progress: !smoke,
        }
    }
}

/// Pixel accuracy and mean intersection over union of a label map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    /// Share of pixels given their label.
    pub pixel_accuracy: f32,
    /// Mean over the classes present in labels or predictions of `|pred ∩ label| / |pred ∪ label|`.
    pub mean_iou: f32,
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
    /// Held-out scores before training.
    pub before: Scores,
    /// Held-out scores after training.
    pub after: Scores,
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
/// Zero batch or eval sizes, an image size under 8, loading the model, a head with fewer than 2 labels, saving the adapter, and reload or merge
/// outputs further than `1e-4` from the trained model's.
pub fn run(options: &Options) -> Result<Report> {
    ensure!(options.batch_size > 0 && options.eval_images > 0, "batch_size and eval_images must be at least 1");
    ensure!(options.image_size >= 8, "image_size {} is too small for a square to fit (at least 8)", options.image_size);
    let device = peft::device::default_device()?.autodiff();
    let dir = &options.model_dir;
    let seg = SegformerConfig::from_file(dir).with_context(|| format!("reading {}", dir.display()))?;
    ensure!(seg.num_labels >= 2, "{}: the synthetic squares need a head with at least 2 labels", dir.display());
    // Red squares need a second channel to differ from white ones.
    let classes = if seg.num_channels >= 2 { seg.num_labels.min(3) } else { 2 };
    let data = Squares { channels: seg.num_channels, size: options.image_size, classes };

    let base = SegformerForSemanticSegmentation::from_pretrained(dir, &device).with_context(|| format!("loading {}", dir.display()))?;
    let config = LoraConfig::new(8)
        .with_lora_alpha(8.0)
        .with_lora_dropout(0.1)
        .with_target_modules(["q_proj", "v_proj"])
        .with_bias(Bias::LoraOnly)
        .with_modules_to_save(["decode_head"]);
    let mut model = get_peft_model(base, config)?;
    model.print_trainable_parameters();
    let trainable = model.trainable_parameters_line();

    let mut rng = Rng::new(11);
    let batches: Vec<_> = (0..options.train_batches.max(1)).map(|_| data.batch(options.batch_size, &mut rng, &device)).collect();
    let (eval_pixels, eval_labels) = data.batch(options.eval_images, &mut Rng::new(4321), &device);
    let score = |m: &PeftModel<SegformerForSemanticSegmentation>| -> Result<Scores> {
        scores(m.valid().model().forward(eval_pixels.clone()), eval_labels.clone(), classes)
    };
    let before = score(&model)?;

    let bar = progress_bar(options.steps, options.show_progress)?;
    let mut optim = AdamWConfig::new().init();
    let mut losses = Vec::with_capacity(options.steps);
    for step in 0..options.steps {
        let (pixels, labels) = batches[step % batches.len()].clone();
        // The per-pixel loss through every active adapter (PeftModel::forward).
        let inputs = peft::ModelInputs { pixel_values: Some(pixels), labels: Some(peft::Labels::Pixels(labels)), ..Default::default() };
        let loss = model.forward(inputs)?.loss.context("labels give a loss")?;
        losses.push(scalar(loss.clone())?);
        bar.set_message(format!("{:.3}", losses[step]));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(options.learning_rate, model, grads);
        bar.inc(1);
    }
    bar.finish();
    let after = score(&model)?;

    let mut trained_model = model.valid();
    let trained = trained_model.model().forward(eval_pixels.clone());
    let base_out = trained_model.with_adapters_disabled(|m| m.forward(eval_pixels.clone()));
    let adapter_effect = max_abs_diff(trained.clone(), base_out)?;
    model.save_pretrained(&options.out_dir)?;
    let fresh = SegformerForSemanticSegmentation::from_pretrained(dir, &device)?;
    let reloaded = PeftModel::from_pretrained(fresh, &options.out_dir)?.valid();
    let reload_diff = max_abs_diff(trained.clone(), reloaded.model().forward(eval_pixels.clone()))?;
    ensure!(reload_diff < 1e-4, "the reloaded adapter gives other logits (max diff {reload_diff})");
    let merge_diff = max_abs_diff(trained, reloaded.merge_and_unload()?.forward(eval_pixels))?;
    ensure!(merge_diff < 1e-4, "the merged model gives other logits (max diff {merge_diff})");

    let loss = (losses.first().copied().unwrap_or(f32::NAN), losses.last().copied().unwrap_or(f32::NAN));
    Ok(Report { trainable, classes, loss, before, after, adapter_effect, reload_diff, merge_diff })
}

/// The synthetic data set: noise in `[-1, -0.5)`, one square of side `size / 4 ..= size / 2`
/// lifted by 1.5 in every channel (class 1) or in channel 0 only (class 2).
struct Squares {
    channels: usize,
    size: usize,
    classes: usize,
}

impl Squares {
    /// `n` images and their label maps.
    ///
    /// # Shapes
    /// - output: `([n, channels, size, size], [n, size, size])`
    fn batch(&self, n: usize, rng: &mut Rng, device: &Device) -> (Tensor<4>, Tensor<3, Int>) {
        let s = self.size;
        let mut pixels = Vec::with_capacity(n * self.channels * s * s);
        let mut labels = Vec::with_capacity(n * s * s);
        for _ in 0..n {
            let class = 1 + rng.below(self.classes - 1);
            let side = s / 4 + rng.below(s / 4 + 1);
            let (top, left) = (rng.below(s - side + 1), rng.below(s - side + 1));
            let inside = |i: usize| (top..top + side).contains(&(i / s)) && (left..left + side).contains(&(i % s));
            labels.extend((0..s * s).map(|i| if inside(i) { class as i64 } else { 0 }));
            for channel in 0..self.channels {
                let lit = class == 1 || channel == 0;
                pixels.extend((0..s * s).map(|i| rng.uniform() * 0.5 - 1.0 + if lit && inside(i) { 1.5 } else { 0.0 }));
            }
        }
        let pixels = Tensor::from_data(TensorData::new(pixels, [n, self.channels, s, s]), device);
        (pixels, Tensor::from_data(TensorData::new(labels, [n, s, s]), device))
    }
}

/// Scores of the logits, upsampled to the labels' size, against the labels.
///
/// # Shapes
/// - `logits`: `[n, labels, h, w]`, `labels`: `[n, height, width]`
fn scores(logits: Tensor<4>, labels: Tensor<3, Int>, classes: usize) -> Result<Scores> {
    let [n, height, width] = labels.dims();
    let predicted = resize_bilinear(logits, [height, width]).argmax(1).reshape([n * height * width]);
    let ints = |t: Tensor<1, Int>| t.into_data().convert::<i64>().try_into_vec::<i64>().map_err(|e| anyhow::anyhow!("{e:?}"));
    let (predicted, labels) = (ints(predicted)?, ints(labels.reshape([n * height * width]))?);
    let hits = predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
    let mut ious = Vec::new();
    // The head may have more labels than the data uses; a prediction of those counts as a class.
    let seen = predicted.iter().chain(&labels).copied().max().unwrap_or(0).max(classes as i64 - 1);
    for class in 0..=seen {
        let inter = predicted.iter().zip(&labels).filter(|(p, l)| **p == class && **l == class).count();
        let union = predicted.iter().zip(&labels).filter(|(p, l)| **p == class || **l == class).count();
        if union > 0 {
            ious.push(inter as f32 / union as f32);
        }
    }
    let mean_iou = ious.iter().sum::<f32>() / ious.len().max(1) as f32;
    Ok(Scores { pixel_accuracy: hits as f32 / labels.len().max(1) as f32, mean_iou })
}
