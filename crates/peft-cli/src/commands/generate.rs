//! `peft generate`: continue prompts with a causal LM, or answer with an encoder-decoder, with
//! adapters, using the generation options of `peft_models::generation`.

use anyhow::{Context, Result, bail};
use peft::burn::tensor::{Int, Tensor, TensorData};
use peft::models::generation::GenerationConfig;
use peft::models::tokenizer::{PaddingSide, Tokenizer};
use std::path::PathBuf;

use super::generation_args::GenerationArgs;
use super::model_args::ModelArgs;
use crate::models::{is_gguf, read_tensor};

/// Arguments of `peft generate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model (with tokenizer.json; generation_config.json if any), adapters and backend.
    #[command(flatten)]
    pub model: ModelArgs,
    /// A prompt; repeat for a batch (left-padded).
    #[arg(long)]
    pub prompt: Vec<String>,
    /// Audio features for Whisper instead of a prompt (safetensors, `input_features`).
    #[arg(long)]
    pub input_features: Option<PathBuf>,
    /// The tokenizer file (default: MODEL/tokenizer.json).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// How to generate (causal and seq2seq LMs).
    #[command(flatten)]
    pub generation: GenerationArgs,
    /// Print JSON (`{"ids": [...], "text": [...]}`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `peft generate`.
pub fn run(mut args: Args) -> Result<()> {
    if args.prompt.is_empty() && args.input_features.is_none() {
        bail!("nothing to generate from: pass --prompt TEXT (repeatable) or --input-features FILE for Whisper");
    }
    let device = peft::device::Backend::chosen(args.model.device)?.device()?;
    args.model.resolve_hub()?;
    let gguf = is_gguf(&args.model.model);
    let tokenizer = match &args.tokenizer {
        Some(path) => Tokenizer::from_file(path)?,
        None if gguf => Tokenizer::from_gguf(&args.model.model)?,
        None => Tokenizer::from_dir(&args.model.model).with_context(|| format!("{} has no tokenizer.json: pass --tokenizer FILE", args.model.model.display()))?,
    };
    let model = args.model.load(None, &device)?;
    let config = generation_config(&args, gguf.then(|| model.base().eos_token_ids()))?;
    let mut inputs = peft::models::auto::AutoInputs::default();
    if let Some(path) = &args.input_features {
        inputs.input_features = Some(read_tensor(path, "input_features", &device)?);
    } else {
        let texts: Vec<&str> = args.prompt.iter().map(String::as_str).collect();
        let batch = tokenizer.encode_batch(&texts, true, config.fill_token_id(), PaddingSide::Left)?;
        let rows = batch.input_ids.len();
        let width = batch.input_ids.first().map_or(0, Vec::len);
        let ids: Vec<i64> = batch.input_ids.iter().flatten().map(|&t| i64::from(t)).collect();
        let mask: Vec<i64> = batch.attention_mask.iter().flatten().map(|&m| i64::from(m)).collect();
        inputs.input_ids = Some(Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, width]), &device));
        inputs.attention_mask = Some(Tensor::<2, Int>::from_data(TensorData::new(mask, [rows, width]), &device));
    }
    let generated = model.generate(inputs, &config).map_err(crate::models::with_flag_hint)?;
    let texts = generated.tokens.iter().map(|row| tokenizer.decode(row, true)).collect::<peft::Result<Vec<_>>>()?;
    if args.json {
        println!("{}", serde_json::json!({ "ids": generated.tokens, "text": texts }));
    } else {
        for (i, text) in texts.iter().enumerate() {
            match args.prompt.get(i) {
                Some(prompt) => println!("{prompt}{text}"),
                None => println!("{text}"),
            }
        }
    }
    Ok(())
}

/// The folder's `generation_config.json` (or transformers' defaults; for a GGUF file, its eos
/// ids) with the flags applied.
fn generation_config(args: &Args, gguf_eos: Option<Vec<u32>>) -> Result<GenerationConfig> {
    let config = match gguf_eos {
        Some(eos) => GenerationConfig { eos_token_id: eos, ..GenerationConfig::default() },
        None => GenerationConfig::from_pretrained(&args.model.model)?,
    };
    args.generation.apply(config)
}
