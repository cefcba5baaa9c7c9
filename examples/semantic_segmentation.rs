//! Semantic segmentation with LoRA: a SegFormer learns to outline synthetic squares.
//!
//! `cargo run -p peft-examples --example semantic_segmentation [MODEL_DIR] [--smoke]` (default:
//! the tiny SegFormer of `fixtures/models/segformer`; `--smoke` or `PEFT_EXAMPLES_SMOKE=1`: a few
//! seconds). See `peft_examples::semantic_segmentation` for what it does.

use anyhow::Result;
use peft_examples::common::{Args, fixtures_dir, target_dir};
use peft_examples::semantic_segmentation::{Options, run};

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let model_dir = args.dir.unwrap_or_else(|| fixtures_dir().join("models/segformer"));
    let out = target_dir().join("semantic-segmentation-adapter");
    let r = run(&Options::new(model_dir, &out, args.smoke))?;
    println!("{} classes; loss {:.3} -> {:.3}", r.classes, r.loss.0, r.loss.1);
    let (b, a) = (r.before, r.after);
    println!("held-out pixel accuracy {:.1}% -> {:.1}%", 100.0 * b.pixel_accuracy, 100.0 * a.pixel_accuracy);
    println!("held-out mean IoU {:.3} -> {:.3}", b.mean_iou, a.mean_iou);
    println!("saved the adapter to {}", out.display());
    println!("the adapter moves the logits by up to {:.3}", r.adapter_effect);
    println!("reloaded adapter: same logits (max diff {:.1e})", r.reload_diff);
    println!("merged model: same logits (max diff {:.1e})", r.merge_diff);
    Ok(())
}
