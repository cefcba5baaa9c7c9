//! Prefix tuning on a seq2seq model: `PrefixTuningConfig(task_type=SEQ_2_SEQ_LM,
//! num_virtual_tokens=20)` on T5, trained to copy, generating through the prefix, saved and
//! reloaded.
//!
//! `cargo run --release -p peft-examples --example prefix_tuning_seq2seq [T5_OR_MT5_DIR] [--smoke]`
//! (default: the tiny `fixtures/models/t5`). See `peft_examples::prefix_tuning_seq2seq` and
//! `docs/prefix-tuning.md`.

use anyhow::{Result, ensure};
use peft_examples::common::{Args, fixtures_dir, target_dir};
use peft_examples::prefix_tuning_seq2seq::{Options, run};

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let model = args.dir.unwrap_or_else(|| fixtures_dir().join("models/t5"));
    let options = Options::new(model, target_dir().join("prefix-tuning-seq2seq-adapter"), args.smoke);
    let r = run(&options)?;
    println!("{}", r.trainable);
    println!("loss {:.3} -> {:.3}", r.loss.0, r.loss.1);
    println!("held-out loss {:.3} -> {:.3}", r.held_out_loss.0, r.held_out_loss.1);
    for (source, generated) in r.sources.iter().zip(&r.generated) {
        println!("{source:?} -> {generated:?}");
    }
    ensure!(r.reload_diff < 1e-4 && r.reload_generates_the_same, "reloaded {:.1e}, same generations: {}", r.reload_diff, r.reload_generates_the_same);
    println!("saved to {}; reloaded: max logit diff {:.1e}, same generations", options.out_dir.display(), r.reload_diff);
    Ok(())
}
