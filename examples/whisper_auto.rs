//! Whisper with a LoRA adapter, loaded from the adapter folder alone, transcribing greedily.
//!
//! `cargo run -p peft-examples --example whisper_auto [ADAPTER_DIR] [--smoke]` (default:
//! `fixtures/cases/whisper_qv/adapter`, whose config names `models/whisper`). See
//! `peft_examples::whisper_auto` for what it does.

use anyhow::{Result, bail};
use peft_examples::common::{Args, fixtures_dir};
use peft_examples::whisper_auto::{Options, run};

fn main() -> Result<()> {
    let args = Args::from_env()?;
    let adapter = args.dir.unwrap_or_else(|| fixtures_dir().join("cases/whisper_qv/adapter"));
    let r = run(&Options::new(adapter, args.smoke))?;
    println!("base {} ({}), adapter loaded by from_pretrained_auto", r.base_dir.display(), r.family);
    for (i, row) in r.generated.iter().enumerate() {
        println!("row {i}: {row:?}");
    }
    match (r.matches(), &r.expected) {
        (Some(true), _) => println!("equal to the ids Python's generate(do_sample=False) gave"),
        (Some(false), Some(expected)) => bail!("Python's generate gave {expected:?}"),
        _ => println!("no expected ids next to this adapter; nothing compared"),
    }
    Ok(())
}
