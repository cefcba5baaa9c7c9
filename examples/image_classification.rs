//! Image classification with LoRA: a ViT learns synthetic colour classes.
//!
//! `cargo run -p peft-examples --example image_classification [MODEL_DIR] [--smoke]` (default:
//! the tiny ViT of `fixtures/models/vit`; `--smoke` or `PEFT_EXAMPLES_SMOKE=1`: a few seconds).
//! See `peft_examples::image_classification` for what it does.

use anyhow::Result;
use peft_examples::common::{Args, fixtures_dir, target_dir};
use peft_examples::image_classification::{Options, run};

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let model_dir = args.dir.unwrap_or_else(|| fixtures_dir().join("models/vit"));
    let out = target_dir().join("image-classification-adapter");
    let r = run(&Options::new(model_dir, &out, args.smoke))?;
    println!("{} classes; loss {:.3} -> {:.3}", r.classes, r.loss.0, r.loss.1);
    println!("held-out accuracy {:.1}% -> {:.1}%", 100.0 * r.accuracy_before, 100.0 * r.accuracy_after);
    println!("saved the adapter to {}", out.display());
    println!("the adapter moves the logits by up to {:.3}", r.adapter_effect);
    println!("reloaded adapter: same logits (max diff {:.1e})", r.reload_diff);
    println!("merged model: same logits (max diff {:.1e})", r.merge_diff);
    Ok(())
}
