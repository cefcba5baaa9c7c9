//! DoRA (`LoraConfig(use_dora=True)`) on the real SmolLM2-135M: the tweet-sentiment fine-tune of
//! [`crate::smollm2_tweets`] with each adapted weight split into a magnitude per output row and a
//! direction that LoRA updates.
//!
//! The run is the LoRA guide's own code path with [`Method::Dora`], so the two measure
//! the same data, prompts and steps; the adapter is saved (with DoRA's magnitudes), reloaded onto
//! a fresh model and merged, and each copy must give the trained model's label scores.

use std::path::Path;

pub use crate::smollm2_tweets::{Method, Options, Report, run};

/// The guide's settings for an assets folder: the LoRA guide's, with DoRA; the full run takes half
/// its steps and 100 held-out tweets, to stay near ten minutes on a shared 2-core machine (the
/// smoke run is the LoRA guide's: 2 steps of 2).
pub fn options(assets: &Path, out_dir: impl Into<std::path::PathBuf>, smoke: bool) -> Options {
    let mut options = Options::new(assets, out_dir, smoke);
    options.method = Method::Dora;
    if !smoke {
        options.steps = 40;
        options.eval = 100;
    }
    options
}
