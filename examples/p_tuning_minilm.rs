//! P-tuning on the real MiniLM-L6 encoder learns tweet sentiment (the guide *P-tuning for
//! sequence classification*).
//!
//! `cargo run --release -p peft-examples --example p_tuning_minilm [ASSETS_DIR] [--smoke]`
//! (default: `$PEFT_ASSETS`, else `target/assets`; `cargo xtask assets` fetches them). See
//! `peft_examples::p_tuning_minilm` and `docs/p-tuning.md`.

use anyhow::{Result, ensure};
use peft_examples::common::{Args, target_dir};
use peft_examples::p_tuning_minilm::{options, run};
use peft_examples::tweets::assets_dir;

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let options = options(&assets_dir(args.dir), target_dir().join("p-tuning-minilm-adapter"), args.smoke);
    let r = run(&options)?;
    println!("{}", r.trainable);
    println!("loss {:.3} -> {:.3}", r.loss.0, r.loss.1);
    println!("held-out accuracy {:.3} -> {:.3} (loss {:.3} -> {:.3}; majority class {:.3}); {:.0} s of training", r.before.1, r.after.1, r.before.0, r.after.0, r.majority, r.train_secs);
    ensure!(r.reload_diff < 1e-4, "reloaded {:.1e}", r.reload_diff);
    println!("saved to {}; reloaded: max logit diff {:.1e}", options.out_dir.display(), r.reload_diff);
    Ok(())
}
