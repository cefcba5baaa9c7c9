//! LoRA on the real SmolLM2-135M (GGUF, dequantized) learns to name a tweet's sentiment.
//!
//! `cargo run --release -p peft-examples --example smollm2_tweets [ASSETS_DIR] [--smoke]`
//! (default: `$PEFT_ASSETS`, else `target/assets`; `cargo xtask assets` fetches them). See
//! `peft_examples::smollm2_tweets`.

use anyhow::{Result, ensure};
use peft_examples::common::{Args, target_dir};
use peft_examples::smollm2_tweets::{Options, run};
use peft_examples::tweets::assets_dir;

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let r = run(&Options::new(&assets_dir(args.dir), target_dir().join("smollm2-tweets-adapter"), args.smoke))?;
    println!("{}", r.trainable);
    println!("loss {:.3} -> {:.3}", r.loss.0, r.loss.1);
    println!("held-out accuracy: {:.3} -> {:.3}; {:.0} s of training", r.accuracy_before, r.accuracy_after, r.train_secs);
    let merge_diff = r.merge_diff.unwrap_or(f32::NAN);
    ensure!(r.reload_diff < 1e-3, "the reloaded adapter gives other logits (max diff {})", r.reload_diff);
    ensure!(merge_diff < 1e-2, "the merged model gives other logits (max diff {merge_diff})");
    println!("reloaded adapter: same label scores (max diff {:.1e}); merged: {merge_diff:.1e}", r.reload_diff);
    Ok(())
}
