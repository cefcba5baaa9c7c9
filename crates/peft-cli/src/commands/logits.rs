//! `peft logits`: a model's head output on token ids, as JSON.

use anyhow::Result;
use std::path::PathBuf;

/// Arguments of `peft logits`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model folder (config.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Adapter folders to load, in order (the first is named `default`, the others after their folder).
    #[arg(long)]
    pub adapter: Vec<PathBuf>,
    /// The adapter to activate (default: the first).
    #[arg(long)]
    pub adapter_name: Option<String>,
    /// Merge the active adapter into the weights before running.
    #[arg(long)]
    pub merge: bool,
    /// Token ids: `5,6,7;8,9,10` (rows separated by `;`; shorter rows are right-padded and masked).
    #[arg(long)]
    pub input_ids: String,
    /// The backend: flex, cpu, wgpu, vulkan, metal, cuda or tch, where compiled in.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Runs `peft logits`.
pub fn run(args: Args) -> Result<()> {
    let batch = crate::input::parse_ids(&args.input_ids, 0)?;
    let device = peft::device::device(&args.device)?;
    let (shape, values) = crate::models::logits(&args, &batch, &device)?;
    println!("{}", serde_json::json!({ "shape": shape, "logits": values }));
    Ok(())
}
