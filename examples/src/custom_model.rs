//! The PEFT guide "Custom models", in Rust: LoRA on a small classifier of your own.
//!
//! The Python guide wraps an `nn.Sequential` MLP with `LoraConfig(target_modules=["seq.0",
//! "seq.2"], modules_to_save=["seq.4"])`. Here the MLP is a Burn module whose linear layers are
//! `AdaptedLinear`s and which derives [`AdapterSites`], so its fields are its adapter sites: LoRA
//! goes on `fc1` and `fc2`, the `classifier` trains in full (`modules_to_save`). The data are
//! seeded: 12 features drawn uniformly in `[-1, 1)`, the class is the group of four features with
//! the largest sum. Training moves only the adapter; the adapter is saved, loaded back onto a
//! fresh base built from the same seed, and merged, and each copy must give the trained outputs.

use anyhow::{Result, ensure};
// `#[derive(Module)]` expands to `burn::...` paths; this crate reaches Burn through the facade.
use peft::burn;
use peft::burn::module::Module;
use peft::burn::nn::Relu;
use peft::burn::nn::loss::CrossEntropyLossConfig;
use peft::burn::optim::{AdamWConfig, GradientsParams};
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::core::AdaptedLinear;
use peft::{AdapterSites, LoraConfig, PeftModel, get_peft_model};
use std::path::PathBuf;

use crate::common::{Rng, floats, max_abs_diff, progress_bar, scalar};

/// Input features.
pub const FEATURES: usize = 12;
/// Width of the hidden layers.
pub const HIDDEN: usize = 32;
/// Classes: which of the three groups of four features has the largest sum.
pub const CLASSES: usize = 3;

/// Your own model: two hidden layers and a classifier, with ReLU between.
///
/// The derive lists `fc1`, `fc2` and `classifier` as linear adapter sites (in this order) and
/// leaves `activation` out; `#[peft(head)]` keeps `"all-linear"` off the classifier, as the
/// Python library keeps it off a model's output layer.
#[derive(Module, Debug, AdapterSites)]
pub struct Mlp {
    /// Features to the first hidden layer.
    pub fc1: AdaptedLinear,
    /// The second hidden layer.
    pub fc2: AdaptedLinear,
    /// Hidden features to class logits.
    #[peft(head)]
    pub classifier: AdaptedLinear,
    /// Not a site: it has no weights.
    pub activation: Relu,
}

impl Mlp {
    /// The same weights for the same seed (the base a saved adapter goes back onto).
    pub fn new(seed: u64, device: &Device) -> Self {
        device.seed(seed);
        let mlp = Mlp {
            fc1: AdaptedLinear::new(FEATURES, HIDDEN, true, device),
            fc2: AdaptedLinear::new(HIDDEN, HIDDEN, true, device),
            classifier: AdaptedLinear::new(HIDDEN, CLASSES, true, device),
            activation: Relu::new(),
        };
        // Burn creates weights lazily, at their first use: use them now, while the seed holds.
        let _ = mlp.forward(Tensor::zeros([1, FEATURES], device));
        mlp
    }

    /// Class logits.
    ///
    /// # Shapes
    /// - `x`: `[batch, FEATURES]`, output `[batch, CLASSES]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.activation.forward(self.fc1.forward(x));
        let x = self.activation.forward(self.fc2.forward(x));
        self.classifier.forward(x)
    }
}

/// How long to train and where the adapter goes.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the adapter is saved.
    pub out_dir: PathBuf,
    /// AdamW steps, one batch each.
    pub steps: usize,
    /// Rows per batch.
    pub batch_size: usize,
    /// Distinct training batches (cycled through).
    pub train_batches: usize,
    /// Held-out rows the accuracy is measured on.
    pub eval_rows: usize,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// The seed of the base model's weights.
    pub seed: u64,
    /// Whether to draw the progress bar.
    pub show_progress: bool,
}

impl Options {
    /// The guide's settings; `smoke` is a second's run for CI.
    pub fn new(out_dir: impl Into<PathBuf>, smoke: bool) -> Self {
        Options {
            out_dir: out_dir.into(),
            steps: if smoke { 40 } else { 300 },
            batch_size: 64,
            train_batches: if smoke { 4 } else { 16 },
            eval_rows: 512,
            learning_rate: 1e-2,
            seed: 42,
            show_progress: !smoke,
        }
    }
}

/// What the run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// The adapter sites the derive lists, with their kinds.
    pub sites: Vec<String>,
    /// `print_trainable_parameters`'s line.
    pub trainable: String,
    /// Training loss at the first and the last step.
    pub loss: (f32, f32),
    /// Held-out accuracy before training (chance: 1/3).
    pub accuracy_before: f32,
    /// Held-out accuracy after training.
    pub accuracy_after: f32,
    /// Largest change of any base weight or bias while training (frozen: 0).
    pub frozen_change: f32,
    /// Largest logit difference between the trained model and the base (adapter disabled).
    pub adapter_effect: f32,
    /// Largest logit difference between the trained model and the adapter loaded from disk.
    pub reload_diff: f32,
    /// Largest logit difference between the trained model and the merged one.
    pub merge_diff: f32,
}

/// Builds, wraps, trains, saves, reloads and merges; see the module docs.
///
/// # Errors
/// Zero sizes, saving or loading the adapter, a base weight that moved while training, and
/// reload or merge outputs further than `1e-4` from the trained model's.
pub fn run(options: &Options) -> Result<Report> {
    ensure!(options.batch_size > 0 && options.eval_rows > 0 && options.train_batches > 0, "sizes must be at least 1");
    let device = peft::device::default_device()?.autodiff();
    let base = Mlp::new(options.seed, &device);
    let sites = base.site_paths().into_iter().map(|(path, kind)| format!("{path} ({kind:?})")).collect();
    let frozen_before = base_weights(&base);

    let config = LoraConfig::new(8)
        .with_lora_alpha(16.0)
        .with_target_modules(["fc1", "fc2"])
        .with_modules_to_save(["classifier"]);
    let mut model = get_peft_model(base, config)?;
    model.print_trainable_parameters();
    let trainable = model.trainable_parameters_line();

    let mut rng = Rng::new(7);
    let batches: Vec<_> = (0..options.train_batches).map(|_| rows(options.batch_size, &mut rng, &device)).collect();
    let (eval_x, eval_y) = rows(options.eval_rows, &mut Rng::new(1234), &device);
    let accuracy = |m: &PeftModel<Mlp>| accuracy(m.valid().model().forward(eval_x.clone()), eval_y.clone());
    let accuracy_before = accuracy(&model)?;

    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optim = AdamWConfig::new().init();
    let bar = progress_bar(options.steps, options.show_progress)?;
    let mut losses = Vec::with_capacity(options.steps);
    for step in 0..options.steps {
        let (x, y) = batches[step % batches.len()].clone();
        let loss = loss_fn.forward(model.model().forward(x), y);
        losses.push(scalar(loss.clone())?);
        bar.set_message(format!("{:.3}", losses[step]));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(options.learning_rate, model, grads);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let accuracy_after = accuracy(&model)?;
    let frozen_change = base_weights(model.model())
        .into_iter()
        .zip(frozen_before)
        .map(|(after, before)| max_abs_diff(after, before))
        .try_fold(0.0f32, |worst, d| d.map(|d| worst.max(d)))?;
    ensure!(frozen_change == 0.0, "a frozen base weight moved by {frozen_change}");

    let mut trained_model = model.valid();
    let trained = trained_model.model().forward(eval_x.clone());
    let adapter_effect = max_abs_diff(trained.clone(), trained_model.with_adapters_disabled(|m| m.forward(eval_x.clone())))?;
    model.save_pretrained(&options.out_dir)?;
    let reloaded = PeftModel::from_pretrained(Mlp::new(options.seed, &device), &options.out_dir)?.valid();
    let reload_diff = max_abs_diff(trained.clone(), reloaded.model().forward(eval_x.clone()))?;
    ensure!(reload_diff < 1e-4, "the reloaded adapter gives other logits (max diff {reload_diff})");
    let merged: Mlp = reloaded.merge_and_unload()?;
    let merge_diff = max_abs_diff(trained, merged.forward(eval_x))?;
    ensure!(merge_diff < 1e-4, "the merged model gives other logits (max diff {merge_diff})");

    let first = losses.first().copied().unwrap_or(f32::NAN);
    let last = losses.last().copied().unwrap_or(f32::NAN);
    Ok(Report {
        sites,
        trainable,
        loss: (first, last),
        accuracy_before,
        accuracy_after,
        frozen_change,
        adapter_effect,
        reload_diff,
        merge_diff,
    })
}

/// Every base weight and bias, flattened, in a fixed order (the adapter and the classifier's
/// trainable copy live beside them, under `adapters`).
fn base_weights(mlp: &Mlp) -> Vec<Tensor<1>> {
    [&mlp.fc1, &mlp.fc2, &mlp.classifier]
        .into_iter()
        .flat_map(|site| {
            let layer = &site.base_layer;
            std::iter::once(layer.weight.val().flatten::<1>(0, 1)).chain(layer.bias.as_ref().map(|b| b.val()))
        })
        .collect()
}

/// `n` rows of features uniform in `[-1, 1)` and their classes.
///
/// # Shapes
/// - output: `([n, FEATURES], [n])`
fn rows(n: usize, rng: &mut Rng, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    const GROUP: usize = FEATURES / CLASSES;
    let mut x = Vec::with_capacity(n * FEATURES);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f32> = (0..FEATURES).map(|_| 2.0 * rng.uniform() - 1.0).collect();
        let sums = row.chunks(GROUP).map(|g| g.iter().sum::<f32>());
        let class = sums.enumerate().fold((0, f32::NEG_INFINITY), |best, (i, s)| if s > best.1 { (i, s) } else { best }).0;
        x.extend(row);
        y.push(class as i64);
    }
    (Tensor::from_data(TensorData::new(x, [n, FEATURES]), device), Tensor::from_data(TensorData::new(y, [n]), device))
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
