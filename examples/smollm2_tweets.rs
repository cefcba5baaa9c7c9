//! LoRA on the real SmolLM2-135M (GGUF, dequantized) learns to name a tweet's sentiment.
//!
//! `cargo run --release -p peft-examples --example smollm2_tweets [ASSETS_DIR] [--smoke]`
//! (default: `$PEFT_ASSETS`, else `target/assets`; `cargo xtask assets` fetches them). See
//! `peft_examples::smollm2_tweets`.

use anyhow::Result;
use peft_examples::common::{Args, target_dir};
use peft_examples::smollm2_tweets::{Options, print_report, run};
use peft_examples::tweets::assets_dir;

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let options = Options::new(&assets_dir(args.dir), target_dir().join("smollm2-tweets-adapter"), args.smoke);
    print_report(&run(&options)?, &options.out_dir)
}
