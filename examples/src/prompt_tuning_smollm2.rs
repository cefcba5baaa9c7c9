//! Prompt tuning with TEXT init on the real SmolLM2-135M, as the PEFT guide *Prompt tuning for
//! causal language modeling* does: `PromptTuningConfig(task_type=CAUSAL_LM,
//! prompt_tuning_init=TEXT, num_virtual_tokens=8, prompt_tuning_init_text=...)`.
//!
//! The run is [`crate::smollm2_tweets`]'s (same prompts, label words and held-out tweets) with
//! [`Method::PromptTuning`]: only the eight virtual tokens train (`8 × 576` parameters), starting
//! as the token embeddings of a task description (tokenized by the GGUF's own tokenizer), at the
//! guide's learning rate. Prompt tuning cannot merge; the saved table is reloaded onto a fresh
//! model and must give the trained model's label scores.

use std::path::{Path, PathBuf};

pub use crate::smollm2_tweets::{Method, Options, Report, run};

/// The text whose token embeddings start the prompt.
pub const INIT_TEXT: &str = "Classify the sentiment of the tweet as negative, neutral or positive:";

/// The guide's settings for an assets folder: 8 virtual tokens from [`INIT_TEXT`], AdamW at 3e-2
/// (the guide's rate; the table is all that trains), 40 steps of 8 tweets (2 of 2 in smoke mode).
pub fn options(assets: &Path, out_dir: impl Into<PathBuf>, smoke: bool) -> Options {
    let mut options = Options::new(assets, out_dir, smoke);
    options.method = Method::PromptTuning { text: INIT_TEXT.into(), num_virtual_tokens: 8 };
    if !smoke {
        // Half the LoRA run's steps and 100 held-out tweets, as the DoRA run, to stay near ten
        // minutes on a 2-core machine.
        options.steps = 40;
        options.eval = 100;
    }
    options.lr = 3e-2;
    options
}
