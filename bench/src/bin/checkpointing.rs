//! `checkpointing report OUT.md [--quick]`: the training step of every peft variant of the bench
//! workload with and without Burn's balanced gradient checkpointing (what `peft train
//! --gradient-checkpointing` turns on), each in its own process: step time and peak memory, as a
//! Markdown table. `--seq N` and `--steps N` change the workload's sequence length and timed
//! steps (activations grow with the sequence). `checkpointing measure VARIANT on|off [flags]` is
//! that child.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use peft_bench::child::{print_json, run_self};
use peft_bench::memory::{mib, reset_peak, rss};
use peft_bench::stats::Summary;
use peft_bench::workload::{Trainer, Variant, Workload};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

const USAGE: &str = "usage: checkpointing report OUT.md [--quick] [--seq N] [--steps N] | checkpointing measure VARIANT on|off [same flags]";

/// The variants compared: the frozen base and every peft method of the bench.
const VARIANTS: [Variant; 5] = [Variant::Frozen, Variant::PeftLora, Variant::PeftDora, Variant::PeftPromptTuning, Variant::PeftPrefixTuning];

#[derive(Serialize, Deserialize)]
struct Measure {
    median_ms: f64,
    peak_extra_mb: f64,
    loss: f32,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut workload = if quick { Workload::quick() } else { Workload::full() };
    let number = |flag: &str| -> Result<Option<usize>> {
        let Some(i) = args.iter().position(|a| a == flag) else { return Ok(None) };
        let value = args.get(i + 1).with_context(|| format!("{flag} needs a number"))?;
        Ok(Some(value.parse().with_context(|| format!("{flag} {value}: not a number"))?))
    };
    if let Some(seq) = number("--seq")? {
        workload.seq = seq;
    }
    if let Some(steps) = number("--steps")? {
        workload.steps = steps;
    }
    match (args.first().map(String::as_str), args.get(1), args.get(2)) {
        (Some("measure"), Some(variant), Some(on)) => {
            peft_bench::use_threads()?;
            print_json(&measure(Variant::from_name(variant)?, on == "on", &workload)?)
        }
        // The children get the report's own flags (`--quick`, `--seq`, `--steps`).
        (Some("report"), Some(out), _) => report(Path::new(out), &workload, &args[2..]),
        _ => bail!("{USAGE}"),
    }
}

/// Steps of `variant` on a flex autodiff device, checkpointed or not: median step time and the
/// peak growth of resident memory over the built model.
fn measure(variant: Variant, checkpointed: bool, workload: &Workload) -> Result<Measure> {
    let mut device = Device::flex().autodiff();
    if checkpointed {
        device = device.gradient_checkpointing();
    }
    // The same weights and batch in both processes, so that their losses can be compared.
    device.seed(0);
    let mut trainer = Trainer::new(variant, workload, &device)?;
    trainer.materialize();
    let base = rss()?.current;
    anyhow::ensure!(reset_peak(), "this kernel cannot reset VmHWM");
    let mut times = Vec::new();
    let mut loss = f32::NAN;
    for i in 0..workload.warmup + workload.steps {
        let clock = Instant::now();
        loss = trainer.step()?;
        if i >= workload.warmup {
            times.push(clock.elapsed());
        }
    }
    let peak = rss()?.peak;
    let times = Summary::of(&times).context("no timed steps")?;
    Ok(Measure { median_ms: times.median_ms, peak_extra_mb: mib(peak.saturating_sub(base)), loss })
}

fn report(out: &Path, workload: &Workload, flags: &[String]) -> Result<()> {
    let mut table = format!("Batch {} x seq {}, {} timed steps after {} warm-up steps.\n\n", workload.batch, workload.seq, workload.steps, workload.warmup);
    table.push_str(
        "| variant | step ms | step ms, checkpointed | time ratio | peak MB | peak MB, checkpointed | memory ratio | same loss |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for variant in VARIANTS {
        eprintln!("checkpointing: {} ...", variant.name());
        let plain = child(variant, false, flags)?;
        let checkpointed = child(variant, true, flags)?;
        writeln!(
            table,
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} | {} |",
            variant.name(),
            plain.median_ms,
            checkpointed.median_ms,
            checkpointed.median_ms / plain.median_ms,
            plain.peak_extra_mb,
            checkpointed.peak_extra_mb,
            checkpointed.peak_extra_mb / plain.peak_extra_mb.max(f64::MIN_POSITIVE),
            if (plain.loss - checkpointed.loss).abs() <= 1e-5 * plain.loss.abs().max(1.0) { "yes" } else { "no" },
        )?;
    }
    std::fs::write(out, &table).with_context(|| format!("cannot write {}", out.display()))?;
    print!("{table}");
    Ok(())
}

/// `checkpointing measure VARIANT on|off` in a fresh process, so that its peak is its own.
fn child(variant: Variant, checkpointed: bool, flags: &[String]) -> Result<Measure> {
    let mode = ["measure", variant.name(), if checkpointed { "on" } else { "off" }];
    run_self(&mode.iter().map(|a| a.to_string()).chain(flags.iter().cloned()).collect::<Vec<_>>())
}
