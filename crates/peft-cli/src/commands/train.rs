//! `peft train`: fine-tune a model folder on a CSV / JSON Lines file with a PEFT method.
//!
//! Classification models (`*ForSequenceClassification`, BERT/RoBERTa encoders) learn `text` →
//! `label`; causal LMs learn `text`, or `completion` after `prompt`. A held-out share of the rows
//! measures the result (accuracy, or mean loss), the adapter and `loss.png` go to `--output`.

use anyhow::{Context, Result, bail};
use peft::burn::module::Module;
use peft::models::auto::{AutoModel, Head};
use peft::models::llama::LlamaForCausalLM;
use peft::models::tokenizer::Tokenizer;
use peft::io::card::TrainingSummary;
use peft::core::adapted::packed::{BaseQuantization, quantize_base_weights};
use peft::core::{AdapterSites, SiteMut};
use peft::{TaskType, get_peft_model};
use std::path::{Path, PathBuf};

use crate::data::{Row, column, label_ids, read_rows};
use crate::rng::Rng;
use crate::train::batch::truncate_keep_last;
use crate::train::method::method_config;
use crate::train::schedule::LrScheduler;
use crate::train::{EvalPoint, History, TrainOptions, causal, classify};

/// Arguments of `peft train`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model folder (config.json, model.safetensors, tokenizer.json), a Hub id (`org/name`)
    /// read from the local Hugging Face cache, or a llama.cpp `.gguf` file (a Llama-family causal
    /// LM; its block-quantized projections stay packed while training: QLoRA).
    #[arg(long)]
    pub model: PathBuf,
    /// With a `.gguf` model: dequantize every weight at load (to f32, or --dtype) instead of
    /// keeping the block-quantized projections packed (faster steps, 4-6x the weights' memory).
    #[arg(long)]
    pub dequantize: bool,
    /// Keep the base's linear weights quantized with Burn's own 8- or 4-bit blocks (QLoRA on a
    /// safetensors model); the adapter and its optimizer state stay f32.
    #[arg(long, value_enum)]
    pub quantize: Option<Quantize>,
    /// The float type the base weights load in (each converted as it is read; f16/bf16 for
    /// backends that compute in them); the adapter and its optimizer state stay f32.
    #[arg(long, value_enum, default_value_t)]
    pub dtype: crate::dtype::BaseDtype,
    /// The revision of a Hub id `--model` (default `main`; recorded in the adapter config).
    #[arg(long)]
    pub revision: Option<String>,
    /// The Hub id `--model` named, when it was one (recorded as `base_model_name_or_path`
    /// instead of the cache folder it resolved to).
    #[arg(skip)]
    pub model_id: Option<String>,
    /// Training data: .csv with a header row, or .jsonl with one object per line.
    #[arg(long)]
    pub data: PathBuf,
    /// The PEFT method: lora, adalora, ia3, prompt-tuning, p-tuning, prefix-tuning, llama-adapter.
    #[arg(long, default_value = "lora")]
    pub method: String,
    /// A method config (adapter_config.json fields); flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Any config field as `key=value` (value in JSON, or a bare string): `--set use_rslora=true`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// LoRA rank.
    #[arg(long)]
    pub r: Option<usize>,
    /// AdaLoRA: the rank every layer starts with (default 12).
    #[arg(long)]
    pub init_r: Option<usize>,
    /// AdaLoRA: the average rank the allocator prunes towards (default 8).
    #[arg(long)]
    pub target_r: Option<usize>,
    /// AdaLoRA: the steps the rank schedule is laid over (default: --steps).
    #[arg(long)]
    pub total_step: Option<usize>,
    /// LoRA alpha.
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// LoRA dropout.
    #[arg(long)]
    pub lora_dropout: Option<f64>,
    /// DoRA: also train a magnitude per output feature (`use_dora` of LoRA).
    #[arg(long)]
    pub use_dora: bool,
    /// LoRA: how the factors start (`init_lora_weights`): `true`, `gaussian`, `pissa`,
    /// `pissa_niter_K` or `olora`. PiSSA and OLoRA start from the base weight itself; their adapter
    /// is saved converted to plain LoRA of twice the rank, for the unchanged base model.
    #[arg(long)]
    pub init_lora_weights: Option<String>,
    /// Modules to adapt, comma-separated, or `all-linear` (default: the architecture's).
    #[arg(long)]
    pub target_modules: Option<String>,
    /// IA3: the targets whose input, not output, is scaled, comma-separated (default: the
    /// architecture's, e.g. `down_proj`).
    #[arg(long)]
    pub feedforward_modules: Option<String>,
    /// Prompt tuning, P-tuning, prefix tuning: the number of virtual tokens (default 8).
    #[arg(long)]
    pub num_virtual_tokens: Option<usize>,
    /// Prompt tuning: start the prompt from this text's token embeddings (`prompt_tuning_init` TEXT).
    #[arg(long)]
    pub prompt_tuning_init_text: Option<String>,
    /// P-tuning, prefix tuning: the prompt encoder's hidden size (default: the model's width).
    #[arg(long)]
    pub encoder_hidden_size: Option<usize>,
    /// Prefix tuning: reparameterise the prefix through a two-layer MLP (`prefix_projection`).
    #[arg(long)]
    pub prefix_projection: bool,
    /// LLaMA-Adapter: prompt tokens per adapted layer (default 10).
    #[arg(long)]
    pub adapter_len: Option<usize>,
    /// LLaMA-Adapter: how many layers, counted from the top, get a prompt (required).
    #[arg(long)]
    pub adapter_layers: Option<usize>,
    /// Where the adapter and loss.png go.
    #[arg(long, default_value = "peft-adapter")]
    pub output: PathBuf,
    /// The tokenizer file (default: MODEL/tokenizer.json).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The text column.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// The class column (classification).
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Optimizer steps.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Batches whose gradients add up to one optimizer step: each step then sees
    /// batch-size x N examples, with the memory of one batch.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub gradient_accumulation_steps: usize,
    /// AdamW learning rate (the peak, with a schedule).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// How the learning rate moves: constant, or linear / cosine decay to 0 at the last step
    /// (transformers' schedules), each after --warmup-steps.
    #[arg(long, value_enum, default_value_t = LrScheduler::Constant)]
    pub lr_scheduler: LrScheduler,
    /// Steps of linear warm-up from 0 to --lr.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub warmup_steps: usize,
    /// Tokens per example at most.
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    /// Share of the rows held out for evaluation (when there is no --eval-data).
    #[arg(long, default_value_t = 0.1)]
    pub eval_fraction: f64,
    /// Seed of the whole run: the split, the data order, the fresh head, the adapter's init and
    /// dropout (two runs with the same seed write the same adapter on one backend).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The backend: flex, cpu, wgpu, vulkan, metal, cuda or tch, where compiled in (default:
    /// `PEFT_DEVICE` when set, else the first compiled in, flex in a default build).
    #[arg(long)]
    pub device: Option<peft::device::Backend>,
    /// Evaluation data (same columns as --data); without it, --eval-fraction of --data is held out.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Evaluate on the evaluation data every N steps (shown in the progress bar, plotted and
    /// listed at the end); 0: only before and after training.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub eval_every: usize,
    /// Write a checkpoint every N steps into OUTPUT/checkpoint-STEP (the adapter, the optimizer
    /// state and the run's progress); 0: never.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub save_every: usize,
    /// Continue an interrupted run from a checkpoint folder (or from the latest checkpoint in a
    /// folder of them), with the flags of the run that wrote it; the result equals an
    /// uninterrupted run's.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Recompute cheap activations in the backward pass instead of keeping them (Burn's balanced
    /// gradient checkpointing): less memory, a little more time, the same result.
    #[arg(long)]
    pub gradient_checkpointing: bool,
}

/// What the model folder is trained as.
enum Family {
    Classifier { roberta: bool },
    CausalLm,
}

/// `--quantize`: how the base's linear weights are kept.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantize {
    /// 8-bit integers, an f32 scale per block of 32 weights.
    Int8,
    /// 4-bit integers, an f32 scale per block of 32 weights.
    Int4,
}

impl Quantize {
    fn base_quantization(self) -> BaseQuantization {
        match self {
            Quantize::Int8 => BaseQuantization::Int8,
            Quantize::Int4 => BaseQuantization::Int4,
        }
    }
}

/// Keeps `model`'s linear weights quantized when `--quantize` asks, and says how much is packed.
fn quantize_base<M: AdapterSites>(mut model: M, args: &Args) -> Result<M> {
    if let Some(q) = args.quantize {
        quantize_base_weights(&mut model, q.base_quantization())?;
    }
    report_packed(&model);
    Ok(model)
}

/// Runs `peft train`.
pub fn run(mut args: Args) -> Result<()> {
    let resolved = crate::hub::model(&args.model, args.revision.as_deref())?;
    if resolved != args.model {
        args.model_id = Some(args.model.display().to_string());
        args.model = resolved;
    }
    // The config is checked before anything loads, so a wrong flag fails at once.
    method_config(&args, TaskType::CausalLm)?;
    if args.dequantize && !crate::models::is_gguf(&args.model) {
        bail!("--dequantize applies to a .gguf --model (its blocks load as f32); {} is not one", args.model.display());
    }
    if args.quantize.is_some() && crate::models::is_gguf(&args.model) {
        bail!("--quantize applies to safetensors models; a .gguf model is already quantized and trains packed (--dequantize loads it as f32)");
    }
    let family = family(&args.model)?;
    let tokenizer = match &args.tokenizer {
        Some(path) => Tokenizer::from_file(path)?,
        None if crate::models::is_gguf(&args.model) => Tokenizer::from_gguf(&args.model)?,
        None => Tokenizer::from_dir(&args.model)?,
    };
    let (train_rows, eval_rows) = &split_rows(&args)?;
    let options = TrainOptions {
        grad_accum: args.gradient_accumulation_steps,
        scheduler: args.lr_scheduler,
        warmup_steps: args.warmup_steps,
        eval_every: args.eval_every,
        save_every: args.save_every,
        checkpoint_output: Some(args.output.clone()),
        resume: args.resume.clone(),
        ..TrainOptions::new(args.steps, args.batch_size, args.lr, args.seed)
    };
    let mut device = peft::device::Backend::chosen(args.device)?.device()?.autodiff();
    if args.gradient_checkpointing {
        device = device.gradient_checkpointing();
    }
    // The backend's generator draws the fresh head, the adapter's init and dropout masks.
    device.seed(args.seed);
    std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    let history = match family {
        Family::Classifier { roberta } => train_classifier(&args, roberta, &tokenizer, train_rows, eval_rows, &options, &device)?,
        Family::CausalLm => train_causal(&args, &tokenizer, train_rows, eval_rows, &options, &device)?,
    };
    print_evaluations(&history.evals, args.eval_every);
    let plot = args.output.join("loss.png");
    keep_tokenizer(&args)?;
    // The adapter is saved by now: a run whose losses are all NaN still says so, without a plot.
    match crate::plot::write_loss_curve(&history.losses, &history.evals, &plot) {
        Ok(()) => println!("saved the adapter and {} to {}", plot.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), args.output.display()),
        Err(e) => {
            eprintln!("warning: no loss plot: {e:#}");
            println!("saved the adapter to {}", args.output.display());
        }
    }
    Ok(())
}

/// The evaluations made every `--eval-every` steps, as a table.
fn print_evaluations(evals: &[EvalPoint], every: usize) {
    if evals.is_empty() {
        return;
    }
    let accuracy = evals.iter().any(|e| e.accuracy.is_some());
    println!("evaluation every {every} steps:");
    println!("{:>8} {:>10}{}", "step", "eval loss", if accuracy { "   accuracy" } else { "" });
    for e in evals {
        let acc = e.accuracy.map(|a| format!(" {a:>10.3}")).unwrap_or_default();
        println!("{:>8} {:>10.4}{acc}", e.step, e.loss);
    }
}

/// The card's account of the run: the data, the flags that shaped it, and `metrics`.
fn summary(args: &Args, train_rows: usize, eval_rows: usize, metrics: Vec<(String, String)>) -> TrainingSummary {
    let file = |p: &Path| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
    let eval_data = match &args.eval_data {
        Some(path) => format!("`{}`, {eval_rows} rows", file(path)),
        None => format!("{eval_rows} rows held out of `{}` (--eval-fraction {}, seed {})", file(&args.data), args.eval_fraction, args.seed),
    };
    let mut hyperparameters: Vec<(String, String)> = vec![
        ("steps".into(), args.steps.to_string()),
        ("batch size".into(), args.batch_size.to_string()),
        ("optimizer".into(), format!("AdamW, lr {}, weight decay 0.01", args.lr)),
        ("learning-rate schedule".into(), schedule_summary(args)),
        ("max length".into(), args.max_length.to_string()),
        ("seed".into(), args.seed.to_string()),
    ];
    if args.gradient_checkpointing {
        hyperparameters.push(("gradient checkpointing".into(), "on".into()));
    }
    if args.gradient_accumulation_steps > 1 {
        hyperparameters.push(("gradient accumulation".into(), format!("{} batches a step", args.gradient_accumulation_steps)));
    }
    if args.eval_every > 0 {
        hyperparameters.push(("evaluation every".into(), format!("{} steps", args.eval_every)));
    }
    TrainingSummary { data: Some(format!("`{}`, {train_rows} rows", file(&args.data))), eval_data: Some(eval_data), hyperparameters, metrics }
}

/// `linear, 10 warm-up steps` (transformers' name of the schedule).
fn schedule_summary(args: &Args) -> String {
    match args.warmup_steps {
        0 => args.lr_scheduler.name().to_string(),
        n => format!("{}, {n} warm-up steps", args.lr_scheduler.name()),
    }
}

/// Says how much of the base stays packed (`--model FILE.gguf`, `--quantize`).
fn report_packed(model: &impl AdapterSites) {
    let (mut layers, mut bytes, mut weights) = (0usize, 0usize, 0usize);
    let mut formats: Vec<String> = Vec::new();
    model.visit_sites(&mut |_, site| {
        if let SiteMut::Linear(l) = site
            && let Some(p) = &l.packed
        {
            layers += 1;
            bytes += p.0.packed_bytes();
            weights += p.dims()[0] * p.dims()[1];
            let format = p.0.format().to_string();
            if !formats.contains(&format) {
                formats.push(format);
            }
        }
    });
    if layers > 0 {
        println!(
            "kept {layers} linear weights packed ({}): {:.1} MB instead of {:.1} MB in f32",
            formats.join(", "),
            bytes as f64 / 1e6,
            weights as f64 * 4.0 / 1e6
        );
    }
}

/// A `--tokenizer FILE` is copied into the adapter folder, so `peft predict --adapter DIR` finds
/// it when the model folder has none.
fn keep_tokenizer(args: &Args) -> Result<()> {
    let Some(path) = &args.tokenizer else { return Ok(()) };
    let copy = args.output.join("tokenizer.json");
    std::fs::copy(path, &copy).with_context(|| format!("cannot copy {} to {}", path.display(), copy.display()))?;
    Ok(())
}

/// The rows to train on and the rows to evaluate on: the `--eval-data` file when given, else a
/// seeded `--eval-fraction` of the shuffled `--data` rows.
fn split_rows(args: &Args) -> Result<(Vec<Row>, Vec<Row>)> {
    let mut rows = read_rows(&args.data)?;
    let needed = if args.eval_data.is_some() { 1 } else { 2 };
    if rows.len() < needed {
        bail!("{}: {} rows; at least {needed} are needed (to train on, and to hold out without --eval-data)", args.data.display(), rows.len());
    }
    Rng::new(args.seed).shuffle(&mut rows);
    if let Some(path) = &args.eval_data {
        let eval = read_rows(path)?;
        if eval.is_empty() {
            bail!("{}: the --eval-data file has no rows", path.display());
        }
        return Ok((rows, eval));
    }
    let held_out = ((rows.len() as f64 * args.eval_fraction).round() as usize).clamp(1, rows.len() - 1);
    let train = rows.split_off(held_out);
    Ok((train, rows))
}

fn family(model: &Path) -> Result<Family> {
    if crate::models::is_gguf(model) {
        // `LlamaForCausalLM::from_gguf` checks the file's architecture when it loads.
        return Ok(Family::CausalLm);
    }
    let kind = crate::models::model_kind(model)?;
    Ok(match kind.model_type.as_str() {
        "bert" => Family::Classifier { roberta: false },
        "roberta" => Family::Classifier { roberta: true },
        "llama" | "mistral" | "qwen2" => Family::CausalLm,
        other => bail!("`peft train` does not train model_type `{other}` yet; supported: bert, roberta (classification), llama, mistral, qwen2 (causal LM)"),
    })
}

fn train_classifier(
    args: &Args,
    roberta: bool,
    tokenizer: &Tokenizer,
    train_rows: &[Row],
    eval_rows: &[Row],
    options: &TrainOptions,
    device: &peft::burn::tensor::Device,
) -> Result<History> {
    let all: Vec<Row> = train_rows.iter().chain(eval_rows).cloned().collect();
    let (classes, _) = label_ids(&column(&all, &args.label_column, &args.data, "--label-column")?);
    println!("classes: {}", classes.join(", "));
    let encode = |rows: &[Row]| -> Result<classify::Examples> {
        let texts = column(rows, &args.text_column, &args.data, "--text-column")?;
        let labels = column(rows, &args.label_column, &args.data, "--label-column")?;
        let mut ids = Vec::with_capacity(rows.len());
        for t in texts {
            ids.push(truncate_keep_last(tokenizer.encode(t, true)?, args.max_length));
        }
        let labels = labels.iter().map(|l| classes.iter().position(|c| c == l.trim()).unwrap_or(0)).collect();
        Ok(classify::Examples { ids, labels, pad_id: tokenizer.pad_token_id().unwrap_or(if roberta { 1 } else { 0 }) })
    };
    let (train_set, eval_set) = (encode(train_rows)?, encode(eval_rows)?);
    let method = method_config(args, TaskType::SeqCls)?;
    // The folder's head when it has one of this size, else a fresh one (a bare encoder).
    let base = args.dtype.load(|| AutoModel::from_pretrained_with_num_labels(&args.model, Some(Head::SequenceClassification), classes.len(), device))?;
    let base = quantize_base(base, args)?;
    let model = get_peft_model(base, method)?;
    model.print_trainable_parameters();
    let start = crate::train::save::Start::remember(&model)?;
    let plain = device.clone().inner();
    let before = classify::accuracy(classify::predict(&model.valid(), &eval_set, 32, &plain)?, &eval_set)?;
    let (model, history) = classify::train(model, &train_set, (options.eval_every > 0).then_some(&eval_set), options, device)?;
    let trained = model.valid();
    let (eval_loss, after) = classify::scores(classify::predict(&trained, &eval_set, 32, &plain)?, &eval_set)?;
    println!("held-out accuracy ({} rows): {before:.3} -> {after:.3}", eval_set.len());
    let metrics = vec![
        ("held-out accuracy before training".into(), format!("{before:.4}")),
        ("held-out accuracy".into(), format!("{after:.4}")),
        ("held-out loss".into(), format!("{eval_loss:.4}")),
        ("classes".into(), classes.join(", ")),
    ];
    start.save(&trained, &args.output, &summary(args, train_set.len(), eval_set.len(), metrics))?;
    // The class names travel with the adapter (`peft predict` and `peft inspect` show them).
    crate::labels::write(&args.output, &classes)?;
    Ok(history)
}

fn train_causal(
    args: &Args,
    tokenizer: &Tokenizer,
    train_rows: &[Row],
    eval_rows: &[Row],
    options: &TrainOptions,
    device: &peft::burn::tensor::Device,
) -> Result<History> {
    let base = args.dtype.load(|| {
        if !crate::models::is_gguf(&args.model) {
            LlamaForCausalLM::from_pretrained(&args.model, device)
        } else if args.dequantize {
            LlamaForCausalLM::from_gguf(&args.model, device)
        } else {
            LlamaForCausalLM::from_gguf_packed(&args.model, device)
        }
    })?;
    let base = quantize_base(base, args)?;
    let eos = base.config().eos_token_ids().first().copied();
    let pad_id = tokenizer.pad_token_id().or(eos).unwrap_or(0);
    let pairs = train_rows.first().is_some_and(|r| r.contains_key("prompt") && r.contains_key("completion"));
    let encode = |rows: &[Row]| -> Result<causal::Sequences> {
        let mut seqs = causal::Sequences { ids: Vec::new(), prompt_len: Vec::new(), pad_id };
        if pairs {
            let prompts = column(rows, "prompt", &args.data, "a `prompt` column")?;
            let completions = column(rows, "completion", &args.data, "a `completion` column")?;
            for (p, c) in prompts.iter().zip(completions) {
                let mut ids = tokenizer.encode(p, true)?;
                let prompt_len = ids.len();
                ids.extend(tokenizer.encode(c, false)?);
                ids.extend(eos);
                ids.truncate(args.max_length);
                seqs.prompt_len.push(prompt_len.min(ids.len()));
                seqs.ids.push(ids);
            }
        } else {
            for t in column(rows, &args.text_column, &args.data, "--text-column (or `prompt` and `completion` columns)")? {
                let mut ids = tokenizer.encode(t, true)?;
                ids.extend(eos);
                ids.truncate(args.max_length);
                seqs.prompt_len.push(0);
                seqs.ids.push(ids);
            }
        }
        Ok(seqs)
    };
    let (train_set, eval_set) = (encode(train_rows)?, encode(eval_rows)?);
    println!("{} examples to train on, {} held out ({})", train_set.len(), eval_set.len(), if pairs { "prompt/completion" } else { "text" });
    let model = get_peft_model(base, method_config(args, TaskType::CausalLm)?)?;
    model.print_trainable_parameters();
    let start = crate::train::save::Start::remember(&model)?;
    let before = causal::mean_loss(&model.valid(), &eval_set, 8, &device.clone().inner())?;
    let (model, history) = causal::train(model, &train_set, (options.eval_every > 0).then_some(&eval_set), options, device)?;
    let trained = model.valid();
    let after = causal::mean_loss(&trained, &eval_set, 8, &device.clone().inner())?;
    println!("held-out loss: {before:.3} -> {after:.3}");
    let metrics = vec![("held-out loss before training".into(), format!("{before:.4}")), ("held-out loss".into(), format!("{after:.4}"))];
    start.save(&trained, &args.output, &summary(args, train_set.len(), eval_set.len(), metrics))?;
    Ok(history)
}
