//! Custom models: LoRA on a small MLP classifier of your own, made adaptable by
//! `#[derive(AdapterSites)]`.
//!
//! `cargo run --release -p peft-examples --example custom_model [--smoke]`. See
//! `peft_examples::custom_model` and `docs/custom-models.md`.

use anyhow::{Result, bail, ensure};
use peft_examples::common::{Args, target_dir};
use peft_examples::custom_model::{Options, run};

fn main() -> Result<()> {
    let args = Args::from_env()?;
    if let Some(dir) = args.dir {
        bail!("custom_model builds its own model and takes no folder (got {})", dir.display());
    }
    let options = Options::new(target_dir().join("custom-model-adapter"), args.smoke);
    let r = run(&options)?;
    println!("adapter sites: {}", r.sites.join(", "));
    println!("loss {:.3} -> {:.3}", r.loss.0, r.loss.1);
    println!("held-out accuracy {:.1}% -> {:.1}%", 100.0 * r.accuracy_before, 100.0 * r.accuracy_after);
    ensure!(r.frozen_change == 0.0, "a base weight moved while training");
    println!("base weights unchanged by training; the adapter moves the logits by up to {:.3}", r.adapter_effect);
    println!("saved to {}", options.out_dir.display());
    println!("reloaded onto a fresh base: max logit diff {:.1e}; merged: {:.1e}", r.reload_diff, r.merge_diff);
    Ok(())
}
