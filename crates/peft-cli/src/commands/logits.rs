//! `peft logits`: a model's head output on token ids, images or audio features, as JSON.

use anyhow::Result;
use std::path::PathBuf;

use super::model_args::ModelArgs;
use crate::models::{inputs, parse_head};

/// Arguments of `peft logits`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model, its adapters and the backend.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The head: causal-lm, seq2seq-lm, sequence-classification, token-classification,
    /// question-answering, feature-extraction, image-classification, semantic-segmentation
    /// (default: the adapter's task_type, else config.json's architectures).
    #[arg(long)]
    pub head: Option<String>,
    /// Token ids: `5,6,7;8,9,10` (rows separated by `;`; shorter rows are right-padded and masked).
    #[arg(long)]
    pub input_ids: Option<String>,
    /// Decoder token ids for encoder-decoders (T5, Whisper): `0,3,4;0,5,6`.
    #[arg(long)]
    pub decoder_input_ids: Option<String>,
    /// Images for image models: a safetensors file with `pixel_values` `[batch, channels, height, width]`.
    #[arg(long)]
    pub pixel_values: Option<PathBuf>,
    /// Audio for Whisper: a safetensors file with `input_features` `[batch, mel_bins, frames]`.
    #[arg(long)]
    pub input_features: Option<PathBuf>,
}

/// Runs `peft logits`.
pub fn run(mut args: Args) -> Result<()> {
    args.model.resolve_hub()?;
    let ids = args.input_ids.as_deref().map(|t| crate::input::parse_ids(t, 0)).transpose()?;
    let decoder_ids = args.decoder_input_ids.as_deref().map(|t| crate::input::parse_ids(t, 0)).transpose()?;
    let device = peft::device::Backend::chosen(args.model.device)?.device()?;
    let head = args.head.as_deref().map(parse_head).transpose()?;
    let model = args.model.load(head, &device)?;
    let inputs = inputs(ids.as_ref(), decoder_ids.as_ref(), args.pixel_values.as_deref(), args.input_features.as_deref(), &device)?;
    let output = model.forward(inputs).map_err(crate::models::with_flag_hint)?;
    let data = output.into_data();
    let shape = data.shape().to_vec();
    let values: Vec<f32> = data.convert::<f32>().try_to_vec().map_err(|e| anyhow::anyhow!("cannot read the output: {e:?}"))?;
    println!("{}", serde_json::json!({ "shape": shape, "logits": values }));
    Ok(())
}
