//! See `peft_examples::prompt_tuning_smollm2`.
//!
//! `cargo run --release -p peft-examples --example prompt_tuning_smollm2 [ASSETS_DIR] [--smoke]`
//! (default: `$PEFT_ASSETS`, else `target/assets`; `cargo xtask assets` fetches them).

use anyhow::{Result, ensure};
use peft_examples::common::{Args, target_dir};
use peft_examples::prompt_tuning_smollm2::{options, run};
use peft_examples::tweets::assets_dir;

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let options = options(&assets_dir(args.dir), target_dir().join("prompt-tuning-smollm2-adapter"), args.smoke);
    let r = run(&options)?;
    println!("{}", r.trainable);
    println!("loss {:.3} -> {:.3}", r.loss.0, r.loss.1);
    println!("held-out accuracy: {:.3} -> {:.3}; {:.0} s of training", r.accuracy_before, r.accuracy_after, r.train_secs);
    ensure!(r.reload_diff < 1e-3, "the reloaded adapter gives other scores (max diff {:.1e})", r.reload_diff);
    println!("saved to {}; reloaded: same label scores (max diff {:.1e})", options.out_dir.display(), r.reload_diff);
    Ok(())
}
