//! `peft predict`: apply a trained adapter to new text.
//!
//! Sequence classifiers give each row's label and class probabilities (and, when the file has
//! labels, accuracy, per-class precision / recall / F1 and a confusion matrix); token
//! classifiers give a label per word; question answering gives the span of the context that
//! answers (scored against expected answers when the file has them); feature extraction gives a
//! vector per text; causal and seq2seq LMs give the completion.

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use peft::burn::tensor::activation::softmax;
use peft::burn::tensor::{Int, Tensor, TensorData};
use peft::models::generation::GenerationConfig;
use peft::models::tokenizer::{PaddingSide, Tokenizer};
use peft::{PeftConfig, TaskModel, TaskType};
use std::path::{Path, PathBuf};

mod features;
mod sink;
mod span;

use self::sink::Sink;
use crate::data::{Row, read_rows};
use super::generation_args::GenerationArgs;
use crate::metrics::Report;
use crate::models::{LoadSpec, Loaded};
use crate::train::batch::{pad_right, truncate_keep_last};

/// Arguments of `peft predict`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The adapter folder (from `peft train` or the Python library's `save_pretrained`).
    #[arg(long)]
    pub adapter: PathBuf,
    /// The revision of a Hub id `--adapter` (default `main`).
    #[arg(long)]
    pub adapter_revision: Option<String>,
    /// The revision of a Hub id `--model` (default: the adapter config's `revision`, else `main`).
    #[arg(long)]
    pub revision: Option<String>,
    /// The base model folder or Hub id (default: the adapter's `base_model_name_or_path`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A text to predict on; repeat for several.
    #[arg(long)]
    pub text: Vec<String>,
    /// A question to answer from the matching --context (question answering); repeat both.
    #[arg(long)]
    pub question: Vec<String>,
    /// The passage the matching --question is answered from.
    #[arg(long)]
    pub context: Vec<String>,
    /// A .csv (header row) or .jsonl file of texts, with labels or without.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where the predictions go: FILE.jsonl or FILE.csv (default: JSON Lines on stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The text column of --data (causal LMs also take a `prompt` column when it is absent).
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// The class column of --data; when present, the predictions are scored against it.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// The question column of --data (question answering).
    #[arg(long, default_value = "question")]
    pub question_column: String,
    /// The passage column of --data (question answering).
    #[arg(long, default_value = "context")]
    pub context_column: String,
    /// The expected answer column of --data (question answering); when present, the answers
    /// are scored (exact match, F1).
    #[arg(long, default_value = "answer")]
    pub answer_column: String,
    /// The longest answer, in tokens (question answering).
    #[arg(long, default_value_t = 30)]
    pub max_answer_tokens: usize,
    /// How a feature extractor's token vectors become one vector per text.
    #[arg(long, value_enum, default_value = "mean")]
    pub pooling: features::Pooling,
    /// Write the scores (accuracy, per-class precision/recall/F1, confusion matrix; exact match
    /// and F1 for question answering) as JSON here.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per row at most (classifiers; longer rows are cut, keeping the closing token; never
    /// more than the model's `max_position_embeddings`).
    #[arg(long, default_value_t = 512)]
    pub max_length: usize,
    /// The tokenizer file (default: MODEL/tokenizer.json, else ADAPTER/tokenizer.json).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Print the scores as one JSON object (the `--metrics` file's) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Draw the confusion matrix as a PNG here (a classifier and a --data file with labels).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// How to generate (causal and seq2seq LMs).
    #[command(flatten)]
    pub generation: GenerationArgs,
    /// The backend: flex, cpu, wgpu, vulkan, metal, cuda or tch, where compiled in (default:
    /// `PEFT_DEVICE` when set, else the first compiled in, flex in a default build).
    #[arg(long)]
    pub device: Option<peft::device::Backend>,
}

/// Runs `peft predict`.
pub fn run(mut args: Args) -> Result<()> {
    let rows = input_rows(&args)?;
    args.adapter = crate::hub::adapter(&args.adapter, args.adapter_revision.as_deref())?;
    let config = PeftConfig::from_dir(&args.adapter).with_context(|| format!("{} is not an adapter folder", args.adapter.display()))?;
    let model_dir = match &args.model {
        Some(dir) => crate::hub::model(dir, args.revision.as_deref().or(config.common().revision.as_deref()))?,
        None => peft::resolve_base(&args.adapter, &config).context("pass the base model with --model DIR")?,
    };
    let tokenizer = match &args.tokenizer {
        Some(path) => Tokenizer::from_file(path)?,
        // `peft train --tokenizer FILE` keeps a copy in the adapter folder, as Python users save
        // theirs there.
        None if !model_dir.join("tokenizer.json").is_file() && args.adapter.join("tokenizer.json").is_file() => Tokenizer::from_dir(&args.adapter)?,
        None => Tokenizer::from_dir(&model_dir)
            .with_context(|| format!("neither {} nor {} has a tokenizer.json: pass --tokenizer FILE", model_dir.display(), args.adapter.display()))?,
    };
    let device = peft::device::Backend::chosen(args.device)?.device()?;
    let adapters = [args.adapter.clone()];
    let spec = LoadSpec { model: &model_dir, adapters: &adapters, adapter_name: None, head: None };
    let model = crate::models::load(&spec, &device)?;
    let mut sink = Sink::open(args.output.as_deref())?;
    let job = Job { args: &args, model: &model, model_dir: &model_dir, tokenizer: &tokenizer, rows: &rows, device: &device };
    let report = match model.base().task_type() {
        _ if matches!(model.base().family(), "vit" | "segformer" | "whisper") => bail!(
            "`peft predict` reads text; this adapter's base is a {} model (images or audio): use `peft logits`",
            model.base().family()
        ),
        Some(TaskType::SeqCls) => classify(&job, &mut sink)?.map(Scores::Classes),
        Some(TaskType::QuestionAns) => span::answer(&job, &mut sink)?.map(Scores::Spans),
        Some(TaskType::FeatureExtraction) | None => {
            features::embed(&job, &mut sink)?;
            None
        }
        Some(TaskType::TokenCls) => {
            tag_words(&job, &mut sink)?;
            None
        }
        Some(TaskType::CausalLm | TaskType::Seq2SeqLm) => {
            complete(&job, &mut sink)?;
            None
        }
    };
    sink.finish()?;
    if let Some(report) = report {
        // The scores go to stderr when the predictions fill stdout, to keep it JSON Lines.
        let text = if args.json { format!("{}\n", report.json()) } else { report.text() };
        if args.output.is_some() {
            print!("{text}");
        } else {
            eprint!("{text}");
        }
        if let Some(path) = &args.metrics {
            std::fs::write(path, serde_json::to_string_pretty(&report.json())? + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        }
        match (&args.plot, &report) {
            (Some(path), Scores::Classes(report)) => crate::plot::write_confusion_matrix(report, path)?,
            (Some(_), Scores::Spans(_)) => bail!("--plot draws a classifier's confusion matrix; question answering has none"),
            (None, _) => {}
        }
    } else if let Some(flag) = [(args.metrics.is_some(), "--metrics"), (args.plot.is_some(), "--plot")].iter().find(|(given, _)| *given).map(|(_, f)| f) {
        bail!(
            "{flag} needs a --data file with expected outputs: a `{}` column (--label-column) for a sequence classifier, an `{}` column (--answer-column) for question answering",
            args.label_column,
            args.answer_column
        );
    }
    Ok(())
}

/// What `peft predict` scores when the rows carry expected outputs.
enum Scores {
    Classes(Report),
    Spans(crate::span_metrics::SpanScores),
}

impl Scores {
    fn text(&self) -> String {
        match self {
            Scores::Classes(r) => r.text(),
            Scores::Spans(s) => s.text(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Scores::Classes(r) => r.json(),
            Scores::Spans(s) => s.json(),
        }
    }
}

/// The rows to predict on: `--text` values (column `text`), `--question` / `--context` pairs,
/// or the `--data` file.
fn input_rows(args: &Args) -> Result<Vec<Row>> {
    let pairs = !args.question.is_empty() || !args.context.is_empty();
    if [!args.text.is_empty(), pairs, args.data.is_some()].iter().filter(|given| **given).count() > 1 {
        bail!("pass one of --text, --question with --context, or --data, not several");
    }
    if let Some(path) = &args.data {
        let rows = read_rows(path)?;
        if rows.is_empty() {
            bail!("{}: no rows", path.display());
        }
        return Ok(rows);
    }
    if pairs {
        if args.question.len() != args.context.len() {
            bail!("give one --context per --question ({} questions, {} contexts)", args.question.len(), args.context.len());
        }
        let row = |(q, c): (&String, &String)| Row::from([(args.question_column.clone(), q.clone()), (args.context_column.clone(), c.clone())]);
        return Ok(args.question.iter().zip(&args.context).map(row).collect());
    }
    if args.text.is_empty() {
        bail!("nothing to predict on: pass --text \"...\" (repeatable), --question \"...\" --context \"...\", or --data FILE.csv|.jsonl");
    }
    Ok(args.text.iter().map(|t| Row::from([(args.text_column.clone(), t.clone())])).collect())
}

/// What every task of `peft predict` works from.
#[derive(Clone, Copy)]
pub(super) struct Job<'a> {
    pub args: &'a Args,
    pub model: &'a Loaded,
    pub model_dir: &'a Path,
    pub tokenizer: &'a Tokenizer,
    pub rows: &'a [Row],
    pub device: &'a peft::burn::tensor::Device,
}

impl<'a> Job<'a> {
    /// The values of `column` in every row, naming `flag`, which picks another column.
    pub fn texts(&self, column: &str, flag: &str) -> Result<Vec<&'a str>> {
        let given = if flag == "--text-column" { "--text" } else { "--question/--context" };
        let source = self.args.data.clone().unwrap_or_else(|| PathBuf::from(given));
        Ok(crate::data::column(self.rows, column, &source, flag)?)
    }

    /// A progress bar on stderr (drawn only on a terminal) over the rows.
    pub fn progress(&self) -> Result<ProgressBar> {
        let bar = ProgressBar::new(self.rows.len() as u64);
        bar.set_style(ProgressStyle::with_template("predicting {bar:30} {pos}/{len} rows [{elapsed} < {eta}]")?);
        Ok(bar)
    }

    /// The padding id of the tokenizer, else the family's (RoBERTa pads with 1).
    pub fn pad_id(&self) -> u32 {
        self.tokenizer.pad_token_id().unwrap_or(if self.model.base().family() == "roberta" { 1 } else { 0 })
    }

    /// `--max-length`, capped at the positions the model has (`max_position_embeddings`;
    /// RoBERTa keeps two of them for its padding offset; a prompt adapter's virtual tokens take
    /// theirs), so a long text is cut rather than refused.
    pub fn max_tokens(&self) -> usize {
        let text = std::fs::read_to_string(self.model_dir.join("config.json")).ok();
        let config: Option<serde_json::Value> = text.and_then(|t| serde_json::from_str(&t).ok());
        let positions = config.as_ref().and_then(|c| c.get("max_position_embeddings")).and_then(|v| v.as_u64()).map(|n| n as usize);
        let reserved = if self.model.base().family() == "roberta" { 2 } else { 0 } + self.model.virtual_positions();
        positions.map_or(self.args.max_length, |p| self.args.max_length.min(p.saturating_sub(reserved).max(1)))
    }

    /// The outputs of the tokens: a prompt adapter's virtual positions in front are dropped.
    ///
    /// # Shapes
    /// - `out`: `[batch, virtual + len, n]`, output `[batch, len, n]`
    pub fn token_outputs(&self, out: Tensor<3>, len: usize) -> Tensor<3> {
        let width = out.dims()[1];
        out.narrow(1, width.saturating_sub(len), len.min(width))
    }

    /// `texts` tokenized with special tokens, cut to [`Job::max_tokens`] (keeping the closing
    /// token) and right-padded: `(input_ids, attention_mask)`.
    pub fn encode(&self, texts: &[&str]) -> Result<(Tensor<2, Int>, Tensor<2, Int>)> {
        let max_length = self.max_tokens();
        let ids = texts.iter().map(|t| Ok(truncate_keep_last(self.tokenizer.encode(t, true)?, max_length))).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        Ok(pad_right(&refs, self.pad_id(), self.device))
    }
}

/// The class names: the adapter's `labels.json`, else the base's `config.json` `id2label` when
/// it has as many classes, else `LABEL_0`, `LABEL_1`, ...
fn class_names(adapter: &Path, model_dir: &Path, classes: usize) -> Result<Vec<String>> {
    let names = match crate::labels::read(adapter)? {
        Some(names) => Some(names),
        None => crate::labels::from_model_config(model_dir),
    };
    Ok(names.filter(|n| n.len() == classes).unwrap_or_else(|| crate::labels::generic(classes)))
}

/// Sequence classification: label and probabilities per row; a report when the rows have labels.
fn classify(job: &Job<'_>, sink: &mut Sink) -> Result<Option<Report>> {
    let Job { args, model, model_dir, rows, .. } = *job;
    let texts = job.texts(&args.text_column, "--text-column")?;
    let bar = job.progress()?;
    let mut names: Option<Vec<String>> = None;
    let mut predicted = Vec::with_capacity(rows.len());
    for (chunk_index, chunk) in texts.chunks(args.batch_size.max(1)).enumerate() {
        let (input_ids, mask) = job.encode(chunk)?;
        let logits = model.forward(peft::ModelInputs::ids_with_mask(input_ids, mask))?.rank2()?;
        let [batch, classes] = logits.dims();
        let probs: Vec<f32> = softmax(logits, 1).into_data().convert::<f32>().try_to_vec().map_err(|e| anyhow::anyhow!("cannot read the output: {e:?}"))?;
        let names = match &names {
            Some(n) => n,
            None => names.insert(class_names(&args.adapter, model_dir, classes)?),
        };
        for (row, p) in probs.chunks(classes).enumerate().take(batch) {
            let best = p.iter().enumerate().fold(0, |b, (i, v)| if *v > p[b] { i } else { b });
            predicted.push(best);
            let index = chunk_index * args.batch_size.max(1) + row;
            let probabilities: serde_json::Map<String, serde_json::Value> =
                names.iter().zip(p).map(|(n, v)| (n.clone(), serde_json::json!(round(*v)))).collect();
            sink.write(&[("text", texts[index])], serde_json::json!({ "label": names[best], "probabilities": probabilities }))?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let Some(names) = names else { return Ok(None) };
    // Scores when every row carries a label the model knows (by name, or as a class index).
    if args.data.is_none() || !rows.iter().all(|r| r.contains_key(&args.label_column)) {
        return Ok(None);
    }
    let mut truth = Vec::with_capacity(rows.len());
    for row in rows {
        let label = row[&args.label_column].trim();
        match names.iter().position(|n| n == label).or_else(|| label.parse::<usize>().ok().filter(|i| *i < names.len())) {
            Some(i) => truth.push(i),
            None => {
                eprintln!("note: no scores: the label `{label}` is not one of the model's classes ({})", names.join(", "));
                return Ok(None);
            }
        }
    }
    Ok(Some(Report::new(names, truth.into_iter().zip(predicted))))
}

/// Probabilities to 6 decimals, so the output stays readable.
pub(super) fn round(v: f32) -> f64 {
    (f64::from(v) * 1e6).round() / 1e6
}

/// Token classification: words split on whitespace, each labelled by its first token.
fn tag_words(job: &Job<'_>, sink: &mut Sink) -> Result<()> {
    let Job { args, model, model_dir, tokenizer, device, .. } = *job;
    let texts = job.texts(&args.text_column, "--text-column")?;
    let (pad, max_length) = (job.pad_id(), job.max_tokens());
    let bar = job.progress()?;
    for (chunk_index, chunk) in texts.chunks(args.batch_size.max(1)).enumerate() {
        // Per row: its token ids and, per word, the position of the word's first token.
        let mut ids = Vec::with_capacity(chunk.len());
        let mut firsts = Vec::with_capacity(chunk.len());
        for text in chunk {
            let words: Vec<&str> = text.split_whitespace().collect();
            let encoding = tokenizer.inner().encode(words.clone(), true).map_err(|e| anyhow::anyhow!("cannot tokenize `{text}`: {e}"))?;
            let tokens: Vec<u32> = encoding.get_ids().iter().copied().take(max_length).collect();
            let mut first = vec![None; words.len()];
            for (position, word) in encoding.get_word_ids().iter().enumerate().take(tokens.len()) {
                if let Some(w) = word.map(|w| w as usize).filter(|w| *w < words.len())
                    && first[w].is_none()
                {
                    first[w] = Some(position);
                }
            }
            ids.push(tokens);
            firsts.push((words, first));
        }
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let (input_ids, mask) = pad_right(&refs, pad, device);
        let len = input_ids.dims()[1];
        let logits = job.token_outputs(model.forward(peft::ModelInputs::ids_with_mask(input_ids, mask))?.rank3()?, len);
        let [_, width, classes] = logits.dims();
        let best: Vec<i64> = logits.argmax(2).into_data().convert::<i64>().try_to_vec().map_err(|e| anyhow::anyhow!("cannot read the output: {e:?}"))?;
        let names = class_names(&args.adapter, model_dir, classes)?;
        for (row, (words, first)) in firsts.iter().enumerate() {
            let tagged: Vec<serde_json::Value> = words
                .iter()
                .zip(first)
                .map(|(word, position)| {
                    // A word cut off by --max-length has no label.
                    let label = position.map(|p| names[best[row * width + p] as usize].clone());
                    serde_json::json!({ "word": word, "label": label })
                })
                .collect();
            let index = chunk_index * args.batch_size.max(1) + row;
            sink.write(&[("text", texts[index])], serde_json::json!({ "words": tagged }))?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Causal and seq2seq LMs: each row's completion, with the generation options.
fn complete(job: &Job<'_>, sink: &mut Sink) -> Result<()> {
    let Job { args, model, model_dir, tokenizer, rows, device } = *job;
    let column = if rows.iter().all(|r| r.contains_key(&args.text_column)) || args.text_column != "text" { args.text_column.as_str() } else { "prompt" };
    let prompts = job.texts(column, "--text-column")?;
    let config = generation_config(args, model_dir)?;
    let bar = job.progress()?;
    for (chunk_index, chunk) in prompts.chunks(args.batch_size.max(1)).enumerate() {
        let batch = tokenizer.encode_batch(chunk, true, config.fill_token_id(), PaddingSide::Left)?;
        let width = batch.input_ids.first().map_or(0, Vec::len);
        let ids: Vec<i64> = batch.input_ids.iter().flatten().map(|&t| i64::from(t)).collect();
        let mask: Vec<i64> = batch.attention_mask.iter().flatten().map(|&m| i64::from(m)).collect();
        let inputs = peft::ModelInputs::ids_with_mask(
            Tensor::<2, Int>::from_data(TensorData::new(ids, [chunk.len(), width]), device),
            Tensor::<2, Int>::from_data(TensorData::new(mask, [chunk.len(), width]), device),
        );
        let generated = model.generate(inputs, &config).map_err(crate::models::with_flag_hint)?;
        for (row, tokens) in generated.tokens.iter().enumerate() {
            let index = chunk_index * args.batch_size.max(1) + row;
            sink.write(&[("text", prompts[index])], serde_json::json!({ "completion": tokenizer.decode(tokens, true)? }))?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The folder's `generation_config.json` (or transformers' defaults) with the flags applied.
fn generation_config(args: &Args, model_dir: &Path) -> Result<GenerationConfig> {
    let config = GenerationConfig::from_pretrained(model_dir)?;
    args.generation.apply(config)
}
