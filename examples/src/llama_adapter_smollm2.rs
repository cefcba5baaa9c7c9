//! LLaMA-Adapter (the Python library's `AdaptionPromptConfig`) on the real SmolLM2-135M: learned
//! prompts attended to by the top layers' attention through gates that start at zero, so the model
//! starts exactly as the base.
//!
//! The run is [`crate::smollm2_tweets`]'s (same prompts, label words and held-out tweets) with
//! [`Method::LlamaAdapter`]: 10 prompt tokens in each of the top 10 of SmolLM2's 30 layers (the
//! paper adapts the top 30 of LLaMA-7B's 32 with 10 tokens; fewer layers here keep the CPU run
//! short), AdamW at the paper's 9e-3. The adapter cannot merge; it is saved, reloaded onto a
//! fresh model and must give the trained model's label scores.

use std::path::{Path, PathBuf};

pub use crate::smollm2_tweets::{Method, Options, Report, run};

/// The guide's settings for an assets folder: 40 steps of 8 tweets (2 of 2 in smoke mode).
pub fn options(assets: &Path, out_dir: impl Into<PathBuf>, smoke: bool) -> Options {
    let mut options = Options::new(assets, out_dir, smoke);
    options.method = Method::LlamaAdapter { adapter_len: 10, adapter_layers: 10 };
    if !smoke {
        // Half the LoRA run's steps and 100 held-out tweets, as the DoRA run, to stay near ten
        // minutes on a 2-core machine.
        options.steps = 40;
        options.eval = 100;
    }
    options.lr = 9e-3;
    options
}
