//! See `peft_examples::prompt_tuning_smollm2`.
//!
//! `cargo run --release -p peft-examples --example prompt_tuning_smollm2 [ASSETS_DIR] [--smoke]`
//! (default: `$PEFT_ASSETS`, else `target/assets`; `cargo xtask assets` fetches them).

use anyhow::Result;
use peft_examples::common::{Args, target_dir};
use peft_examples::prompt_tuning_smollm2::{options, run};
use peft_examples::smollm2_tweets::print_report;
use peft_examples::tweets::assets_dir;

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let options = options(&assets_dir(args.dir), target_dir().join("prompt-tuning-smollm2-adapter"), args.smoke);
    print_report(&run(&options)?, &options.out_dir)
}
