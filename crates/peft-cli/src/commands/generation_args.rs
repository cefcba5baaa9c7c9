//! The generation flags `peft generate` and `peft predict` share.

use anyhow::Result;
use peft::models::generation::GenerationConfig;

/// How to generate: what each flag overrides in the model's `generation_config.json`.
#[derive(clap::Args, Debug)]
pub struct GenerationArgs {
    /// New tokens at most.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Sample instead of picking the most likely token.
    #[arg(long)]
    pub do_sample: bool,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Sample among the k most likely tokens (0: all).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample among the most likely tokens whose probabilities add up to p.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Beam search with this many beams.
    #[arg(long)]
    pub num_beams: Option<usize>,
    /// Penalise tokens already present (>1 discourages repeats).
    #[arg(long)]
    pub repetition_penalty: Option<f64>,
    /// Seed for sampling.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl GenerationArgs {
    /// `config` (the model's own, or transformers' defaults) with the given flags applied, checked.
    pub fn apply(&self, mut config: GenerationConfig) -> Result<GenerationConfig> {
        config.max_new_tokens = Some(self.max_new_tokens);
        config.do_sample = self.do_sample;
        if let Some(t) = self.temperature {
            config.temperature = t;
        }
        if let Some(k) = self.top_k {
            config.top_k = k;
        }
        if let Some(p) = self.top_p {
            config.top_p = p;
        }
        if let Some(n) = self.num_beams {
            config.num_beams = n;
        }
        if let Some(r) = self.repetition_penalty {
            config.repetition_penalty = r;
        }
        if self.seed.is_some() {
            config.seed = self.seed;
        }
        config.validate()?;
        Ok(config)
    }
}
