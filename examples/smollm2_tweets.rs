//! LoRA on the real SmolLM2-135M (GGUF, dequantized) learns to name a tweet's sentiment.
//!
//! `cargo run --release -p peft-examples --example smollm2_tweets [ASSETS_DIR] [--smoke]`
//! (default: `$PEFT_ASSETS`, else `target/assets`; `cargo xtask assets` fetches them). See
//! `peft_examples::smollm2_tweets`.

use anyhow::{Result, ensure};
use peft_examples::common::{Args, target_dir};
use peft_examples::smollm2_tweets::{Options, run};
use std::path::PathBuf;

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let assets = args.dir.or_else(|| std::env::var_os("PEFT_ASSETS").map(PathBuf::from)).unwrap_or_else(|| target_dir().join("assets"));
    let r = run(&Options::new(&assets, target_dir().join("smollm2-tweets-adapter"), args.smoke))?;
    println!("{}", r.trainable);
    println!("loss {:.3} -> {:.3}", r.loss.0, r.loss.1);
    println!("held-out accuracy: {:.3} -> {:.3}", r.accuracy_before, r.accuracy_after);
    ensure!(r.reload_diff < 1e-3, "the reloaded adapter gives other logits (max diff {})", r.reload_diff);
    println!("reloaded adapter: same label scores (max diff {:.1e})", r.reload_diff);
    Ok(())
}
