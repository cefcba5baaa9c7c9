//! (IA)³ on a seq2seq model: `IA3Config(task_type=SEQ_2_SEQ_LM)` with T5's default targets (`k`,
//! `v`, and `wo` scaling its input), trained to copy, saved, reloaded and merged.
//!
//! `cargo run -p peft-examples --example ia3_seq2seq [T5_OR_MT5_DIR] [--smoke]` (default: the tiny
//! `fixtures/models/t5`; `fixtures/models/mt5` runs it on mT5). See `peft_examples::ia3_seq2seq` and `docs/ia3.md`.

use anyhow::{Result, ensure};
use peft_examples::common::{Args, fixtures_dir, target_dir};
use peft_examples::ia3_seq2seq::{Options, run};

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let model = args.dir.unwrap_or_else(|| fixtures_dir().join("models/t5"));
    let options = Options::new(model, target_dir().join("ia3-seq2seq-adapter"), args.smoke);
    let r = run(&options)?;
    println!("{}", r.trainable);
    println!("targets {:?}, feed-forward (input scaled) {:?}", r.targets.0, r.targets.1);
    println!("loss {:.3} -> {:.3}", r.loss.0, r.loss.1);
    println!("held-out loss {:.3} -> {:.3}", r.held_out_loss.0, r.held_out_loss.1);
    ensure!(r.reload_diff < 1e-4 && r.merge_diff < 1e-4, "reloaded {:.1e}, merged {:.1e}", r.reload_diff, r.merge_diff);
    println!("saved to {}; reloaded: max logit diff {:.1e}; merged: {:.1e}", options.out_dir.display(), r.reload_diff, r.merge_diff);
    Ok(())
}
