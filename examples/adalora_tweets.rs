//! AdaLoRA on the real MiniLM-L6 encoder learns tweet sentiment while its rank allocator prunes
//! the ranks from 12 to an average of 8 per matrix.
//!
//! `cargo run --release -p peft-examples --example adalora_tweets [ASSETS_DIR] [--smoke]`
//! (default: `$PEFT_ASSETS`, else `target/assets`; `cargo xtask assets` fetches them). See
//! `peft_examples::adalora_tweets` and `docs/adalora.md`.

use anyhow::{Result, ensure};
use peft_examples::adalora_tweets::{Options, run};
use peft_examples::common::{Args, target_dir};
use peft_examples::tweets::assets_dir;

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let options = Options::new(&assets_dir(args.dir), target_dir().join("adalora-tweets-adapter"), args.smoke);
    let r = run(&options)?;
    println!("{}", r.trainable);
    println!("loss {:.3} -> {:.3} (with the orthogonality penalty {:.4} -> {:.4})", r.loss.0, r.loss.1, r.orth_reg.0, r.orth_reg.1);
    println!("held-out accuracy {:.3} -> {:.3} (loss {:.3} -> {:.3}; majority class {:.3}); {:.0} s of training", r.before.1, r.after.1, r.before.0, r.after.0, r.majority, r.train_secs);
    let kept: usize = r.ranks.iter().map(|(_, k)| k).sum();
    println!("ranks kept: {kept} of {} (budget {})", 12 * r.ranks.len(), r.target_budget);
    for (module, k) in &r.ranks {
        println!("  {module}: {k}");
    }
    ensure!(r.reload_diff < 1e-4 && r.merge_diff < 1e-3, "reloaded {:.1e}, merged {:.1e}", r.reload_diff, r.merge_diff);
    println!("saved to {}; reloaded: max logit diff {:.1e}; merged: {:.1e}", options.run.out_dir.display(), r.reload_diff, r.merge_diff);
    Ok(())
}
