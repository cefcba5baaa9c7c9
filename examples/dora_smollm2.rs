//! DoRA on the real SmolLM2-135M (GGUF, dequantized) learns to name a tweet's sentiment.
//!
//! `cargo run --release -p peft-examples --example dora_smollm2 [ASSETS_DIR] [--smoke]`
//! (default: `$PEFT_ASSETS`, else `target/assets`; `cargo xtask assets` fetches them). See
//! `peft_examples::dora_smollm2`.

use anyhow::{Result, ensure};
use peft_examples::common::{Args, target_dir};
use peft_examples::dora_smollm2::{options, run};
use peft_examples::tweets::assets_dir;

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let options = options(&assets_dir(args.dir), target_dir().join("dora-smollm2-adapter"), args.smoke);
    let r = run(&options)?;
    println!("{}", r.trainable);
    println!("loss {:.3} -> {:.3}", r.loss.0, r.loss.1);
    println!("held-out accuracy: {:.3} -> {:.3}; {:.0} s of training", r.accuracy_before, r.accuracy_after, r.train_secs);
    let merge_diff = r.merge_diff.unwrap_or(f32::NAN);
    ensure!(r.reload_diff < 1e-3 && merge_diff < 1e-2, "reloaded {:.1e}, merged {merge_diff:.1e}", r.reload_diff);
    println!("saved to {}; reloaded: same label scores (max diff {:.1e}); merged: {merge_diff:.1e}", options.out_dir.display(), r.reload_diff);
    Ok(())
}
