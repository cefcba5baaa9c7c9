//! `peft predict`: apply a trained adapter to new text.
//!
//! Sequence classifiers give each row's label and class probabilities (and, when the file has
//! labels, accuracy, per-class precision / recall / F1 and a confusion matrix); token
//! classifiers give a label per word; causal and seq2seq LMs give the completion.

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use peft::burn::tensor::activation::softmax;
use peft::burn::tensor::{Int, Tensor, TensorData};
use peft::models::generation::GenerationConfig;
use peft::models::tokenizer::{PaddingSide, Tokenizer};
use peft::{PeftConfig, TaskModel, TaskType};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    /// Write the scores (accuracy, per-class precision/recall/F1, confusion matrix) as JSON here.
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
    /// The backend: flex, cpu, wgpu, vulkan, metal, cuda or tch, where compiled in.
    #[arg(long, default_value = "flex")]
    pub device: String,
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
    let device = peft::device::device(&args.device)?;
    let adapters = [args.adapter.clone()];
    let spec = LoadSpec { model: &model_dir, adapters: &adapters, adapter_name: None, head: None };
    let model = crate::models::load(&spec, &device)?;
    let mut sink = Sink::open(args.output.as_deref())?;
    let report = match model.base().task_type() {
        Some(TaskType::SeqCls) => classify(&args, &model, &model_dir, &tokenizer, &rows, &mut sink, &device)?,
        Some(TaskType::TokenCls) => {
            tag_words(&args, &model, &model_dir, &tokenizer, &rows, &mut sink, &device)?;
            None
        }
        Some(TaskType::CausalLm | TaskType::Seq2SeqLm) => {
            complete(&args, &model, &model_dir, &tokenizer, &rows, &mut sink, &device)?;
            None
        }
        other => bail!(
            "`peft predict` serves sequence and token classifiers and causal / seq2seq LMs; this adapter's model is a {} model: use `peft logits`",
            other.map_or("feature-extraction", |t| t.as_str())
        ),
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
        if let Some(path) = &args.plot {
            crate::plot::write_confusion_matrix(&report, path)?;
        }
    } else if let Some(flag) = [(args.metrics.is_some(), "--metrics"), (args.plot.is_some(), "--plot")].iter().find(|(given, _)| *given).map(|(_, f)| f) {
        bail!("{flag} needs a sequence classifier and a --data file with a `{}` column (--label-column)", args.label_column);
    }
    Ok(())
}

/// The rows to predict on: `--text` values (column `text`), else the `--data` file.
fn input_rows(args: &Args) -> Result<Vec<Row>> {
    match (&args.data, args.text.is_empty()) {
        (Some(_), false) => bail!("pass either --text or --data, not both"),
        (None, true) => bail!("nothing to predict on: pass --text \"...\" (repeatable) or --data FILE.csv|.jsonl"),
        (None, false) => Ok(args.text.iter().map(|t| Row::from([(args.text_column.clone(), t.clone())])).collect()),
        (Some(path), true) => {
            let rows = read_rows(path)?;
            if rows.is_empty() {
                bail!("{}: no rows", path.display());
            }
            Ok(rows)
        }
    }
}

/// The values of `column` in every row, naming the flag that picks another column.
fn texts<'a>(args: &Args, rows: &'a [Row], column: &str) -> Result<Vec<&'a str>> {
    let source = args.data.clone().unwrap_or_else(|| PathBuf::from("--text"));
    Ok(crate::data::column(rows, column, &source, "--text-column")?)
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

/// A progress bar on stderr (drawn only on a terminal) for `rows` rows.
fn progress(rows: usize) -> Result<ProgressBar> {
    let bar = ProgressBar::new(rows as u64);
    bar.set_style(ProgressStyle::with_template("predicting {bar:30} {pos}/{len} rows [{elapsed} < {eta}]")?);
    Ok(bar)
}

/// The padding id of the tokenizer, else the family's (RoBERTa pads with 1).
fn pad_id(tokenizer: &Tokenizer, model: &Loaded) -> u32 {
    tokenizer.pad_token_id().unwrap_or(if model.base().family() == "roberta" { 1 } else { 0 })
}

/// `--max-length`, capped at the positions the model has (`max_position_embeddings`; RoBERTa
/// keeps two of them for its padding offset), so a long text is cut rather than refused.
fn max_tokens(args: &Args, model_dir: &Path, model: &Loaded) -> usize {
    let config: Option<serde_json::Value> = std::fs::read_to_string(model_dir.join("config.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let positions = config.as_ref().and_then(|c| c.get("max_position_embeddings")).and_then(|v| v.as_u64()).map(|n| n as usize);
    let reserved = if model.base().family() == "roberta" { 2 } else { 0 };
    positions.map_or(args.max_length, |p| args.max_length.min(p.saturating_sub(reserved).max(1)))
}

/// Sequence classification: label and probabilities per row; a report when the rows have labels.
fn classify(
    args: &Args,
    model: &Loaded,
    model_dir: &Path,
    tokenizer: &Tokenizer,
    rows: &[Row],
    sink: &mut Sink,
    device: &peft::burn::tensor::Device,
) -> Result<Option<Report>> {
    let texts = texts(args, rows, &args.text_column)?;
    let pad = pad_id(tokenizer, model);
    let max_length = max_tokens(args, model_dir, model);
    let bar = progress(rows.len())?;
    let mut names: Option<Vec<String>> = None;
    let mut predicted = Vec::with_capacity(rows.len());
    for (chunk_index, chunk) in texts.chunks(args.batch_size.max(1)).enumerate() {
        let ids = chunk.iter().map(|t| Ok(truncate_keep_last(tokenizer.encode(t, true)?, max_length))).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let (input_ids, mask) = pad_right(&refs, pad, device);
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
            sink.write(&rows[index], &args.text_column, serde_json::json!({ "label": names[best], "probabilities": probabilities }))?;
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
fn round(v: f32) -> f64 {
    (f64::from(v) * 1e6).round() / 1e6
}

/// Token classification: words split on whitespace, each labelled by its first token.
fn tag_words(
    args: &Args,
    model: &Loaded,
    model_dir: &Path,
    tokenizer: &Tokenizer,
    rows: &[Row],
    sink: &mut Sink,
    device: &peft::burn::tensor::Device,
) -> Result<()> {
    let texts = texts(args, rows, &args.text_column)?;
    let pad = pad_id(tokenizer, model);
    let max_length = max_tokens(args, model_dir, model);
    let bar = progress(rows.len())?;
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
        let logits = model.forward(peft::ModelInputs::ids_with_mask(input_ids, mask))?.rank3()?;
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
            sink.write(&rows[index], &args.text_column, serde_json::json!({ "words": tagged }))?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Causal and seq2seq LMs: each row's completion, with the generation options.
fn complete(
    args: &Args,
    model: &Loaded,
    model_dir: &Path,
    tokenizer: &Tokenizer,
    rows: &[Row],
    sink: &mut Sink,
    device: &peft::burn::tensor::Device,
) -> Result<()> {
    let column = if rows.iter().all(|r| r.contains_key(&args.text_column)) || args.text_column != "text" { args.text_column.as_str() } else { "prompt" };
    let prompts = texts(args, rows, column)?;
    let config = generation_config(args, model_dir)?;
    let bar = progress(rows.len())?;
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
            sink.write(&rows[index], column, serde_json::json!({ "completion": tokenizer.decode(tokens, true)? }))?;
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

/// Where predictions go: JSON Lines (stdout or a .jsonl file) or a CSV file.
enum Sink {
    Lines(Box<dyn Write>),
    Csv { writer: Box<csv::Writer<std::fs::File>>, header: Option<Vec<String>> },
}

impl Sink {
    fn open(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else { return Ok(Sink::Lines(Box::new(std::io::BufWriter::new(std::io::stdout())))) };
        let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Ok(Sink::Csv { writer: Box::new(csv::Writer::from_writer(file)), header: None }),
            Some("jsonl" | "json") => Ok(Sink::Lines(Box::new(std::io::BufWriter::new(file)))),
            _ => bail!("{}: --output must end in .jsonl or .csv", path.display()),
        }
    }

    /// One row: its text, then `prediction`'s fields (in CSV,
    /// probabilities become one `p_<class>` column each, word labels `word/label` pairs).
    fn write(&mut self, row: &Row, text_column: &str, prediction: serde_json::Value) -> Result<()> {
        let mut record = serde_json::Map::new();
        record.insert("text".into(), row.get(text_column).cloned().unwrap_or_default().into());
        for (key, value) in prediction.as_object().into_iter().flatten() {
            record.insert(key.clone(), value.clone());
        }
        match self {
            Sink::Lines(out) => writeln!(out, "{}", serde_json::Value::Object(record))?,
            Sink::Csv { writer, header } => {
                let cells = csv_cells(&record);
                if header.is_none() {
                    let names: Vec<String> = cells.iter().map(|(k, _)| k.clone()).collect();
                    writer.write_record(&names)?;
                    *header = Some(names);
                }
                writer.write_record(cells.iter().map(|(_, v)| v))?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Lines(mut out) => out.flush()?,
            Sink::Csv { mut writer, .. } => writer.flush()?,
        }
        Ok(())
    }
}

/// A prediction as flat CSV cells.
fn csv_cells(record: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    let mut cells = Vec::new();
    for (key, value) in record {
        match (key.as_str(), value) {
            ("probabilities", serde_json::Value::Object(p)) => cells.extend(p.iter().map(|(c, v)| (format!("p_{c}"), v.to_string()))),
            ("words", serde_json::Value::Array(words)) => {
                let pairs: Vec<String> = words
                    .iter()
                    .map(|w| format!("{}/{}", w["word"].as_str().unwrap_or(""), w["label"].as_str().unwrap_or("")))
                    .collect();
                cells.push(("words".into(), pairs.join(" ")));
            }
            (_, serde_json::Value::String(s)) => cells.push((key.clone(), s.clone())),
            (_, other) => cells.push((key.clone(), other.to_string())),
        }
    }
    cells
}
