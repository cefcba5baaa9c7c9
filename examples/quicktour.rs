//! The PEFT quicktour on a sequence-to-sequence model: LoRA (r 8, alpha 32, dropout 0.1) on an
//! mT5, trained to copy, saved, reloaded from the adapter folder alone, generating.
//!
//! `cargo run -p peft-examples --example quicktour [MODEL_DIR] [--smoke]` (default: the tiny
//! `fixtures/models/mt5`). See `peft_examples::quicktour`.

use anyhow::{Result, ensure};
use peft_examples::common::{Args, fixtures_dir, target_dir};
use peft_examples::quicktour::{Options, run};

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let model = args.dir.unwrap_or_else(|| fixtures_dir().join("models/mt5"));
    let r = run(&Options::new(model, target_dir().join("quicktour-adapter"), args.smoke))?;
    println!("{}", r.trainable);
    println!("loss {:.3} -> {:.3}", r.loss.0, r.loss.1);
    for (i, source) in r.sources.iter().enumerate() {
        println!("{source:?} -> trained {:?}, base alone {:?}", r.trained[i], r.base[i]);
    }
    ensure!(r.trained == r.reloaded, "the reloaded adapter generates {:?}", r.reloaded);
    println!("the adapter reloaded from its folder alone generates the same");
    Ok(())
}
