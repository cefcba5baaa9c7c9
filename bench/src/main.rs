//! `peft-bench RESULTS_DIR [--quick]`: the Rust side of `cargo xtask bench`.
//!
//! Runs every training-step variant and the large-model attach, each in its own child process
//! (this binary again, with `--variant NAME` or `--attach LAYERS`) so that each peak memory is its
//! own; then all variants once more in one process with their steps interleaved (`--interleaved`),
//! for step-time ratios that a busy machine cannot skew. Writes `RESULTS_DIR/rust.json`, which
//! `xtask/python/bench.py` merges into the table.

use anyhow::{Context, Result, bail};
use peft_bench::attach;
use peft_bench::child::{print_json, run_self};
use peft_bench::memory::{mib, reset_peak, rss};
use peft_bench::stats::Summary;
use peft_bench::workload::{Trainer, Variant, Workload};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Decoder layers of the large-model attach: Llama-70B's 80, or 2 with `--quick`.
const ATTACH_LAYERS: usize = 80;
const ATTACH_LAYERS_QUICK: usize = 2;

enum Mode {
    /// Run everything and write `rust.json` into the folder.
    Parent(PathBuf),
    /// One training-step variant; prints its result as one JSON line.
    Variant(Variant),
    /// The large-model attach with this many layers; prints its result as one JSON line.
    Attach(usize),
    /// Every variant in one process, steps taken in turn; prints their timings as one JSON line.
    Interleaved,
}

struct Args {
    mode: Mode,
    quick: bool,
}

fn parse_args() -> Result<Args> {
    let usage = "usage: peft-bench RESULTS_DIR [--quick]";
    let mut args = std::env::args().skip(1);
    let mut quick = false;
    let mut mode = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--variant" => {
                let name = args.next().context("--variant needs a name")?;
                mode = Some(Mode::Variant(Variant::from_name(&name)?));
            }
            "--interleaved" => mode = Some(Mode::Interleaved),
            "--attach" => {
                let layers = args.next().context("--attach needs a layer count")?;
                mode = Some(Mode::Attach(layers.parse().with_context(|| format!("--attach {layers}: not a count"))?));
            }
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other if other.starts_with('-') => bail!("unknown option `{other}`\n{usage}"),
            folder => mode = Some(Mode::Parent(PathBuf::from(folder))),
        }
    }
    Ok(Args { mode: mode.context(usage)?, quick })
}

fn main() -> Result<()> {
    let args = parse_args()?;
    peft_bench::use_threads()?;
    let workload = if args.quick { Workload::quick() } else { Workload::full() };
    match args.mode {
        Mode::Parent(folder) => parent(&folder, &workload, args.quick),
        Mode::Variant(variant) => print_json(&run_variant(variant, &workload)?),
        Mode::Attach(layers) => print_json(&attach::run(layers, &peft_bench::device()?)?),
        Mode::Interleaved => print_json(&run_interleaved(&workload)?),
    }
}

/// One variant's timings and memory.
#[derive(Serialize)]
struct VariantReport {
    #[serde(flatten)]
    times: Summary,
    /// RSS once the model is built and initialised, in MiB.
    rss_base_mb: f64,
    /// Peak RSS over the steps, in MiB.
    peak_rss_mb: f64,
    /// What the steps added at their peak: activations, gradients, optimizer state.
    peak_extra_mb: f64,
    /// Whether the peak was reset after building (else it also covers the build).
    peak_reset: bool,
    trainable_params: usize,
    total_params: usize,
    /// The last step's loss, as a sanity check (about ln(vocab) for a fresh model).
    loss: f32,
}

fn run_variant(variant: Variant, workload: &Workload) -> Result<VariantReport> {
    let device = peft_bench::device()?.autodiff();
    let mut trainer = Trainer::new(variant, workload, &device)?;
    trainer.materialize();
    let (trainable_params, total_params) = trainer.parameters();
    let base = rss()?.current;
    let peak_reset = reset_peak();
    let mut times = Vec::with_capacity(workload.steps);
    let mut loss = f32::NAN;
    for i in 0..workload.warmup + workload.steps {
        let clock = Instant::now();
        // `step` reads the loss back and syncs the device before returning.
        loss = trainer.step()?;
        let elapsed: Duration = clock.elapsed();
        if i >= workload.warmup {
            times.push(elapsed);
        }
    }
    let peak = rss()?.peak;
    Ok(VariantReport {
        times: Summary::of(&times).context("no timed steps")?,
        rss_base_mb: mib(base),
        peak_rss_mb: mib(peak),
        peak_extra_mb: mib(peak.saturating_sub(base)),
        peak_reset,
        trainable_params,
        total_params,
        loss,
    })
}

/// Times every variant in one process, one step of each in turn, so that whatever else the
/// machine does slows them alike and their ratios stay fair (the machine is shared).
fn run_interleaved(workload: &Workload) -> Result<serde_json::Map<String, Value>> {
    let device = peft_bench::device()?.autodiff();
    let mut trainers = Variant::ALL.into_iter().map(|v| Trainer::new(v, workload, &device)).collect::<Result<Vec<_>>>()?;
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(workload.steps); trainers.len()];
    for i in 0..workload.warmup + workload.steps {
        for (trainer, times) in trainers.iter_mut().zip(&mut times) {
            let clock = Instant::now();
            trainer.step()?;
            let elapsed = clock.elapsed();
            if i >= workload.warmup {
                times.push(elapsed);
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (trainer, times) in trainers.iter().zip(&times) {
        out.insert(trainer.variant().name().into(), serde_json::to_value(Summary::of(times).context("no timed steps")?)?);
    }
    Ok(out)
}

fn parent(folder: &Path, workload: &Workload, quick: bool) -> Result<()> {
    std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let quick_arg: Vec<String> = if quick { vec!["--quick".into()] } else { Vec::new() };
    // The machine may be shared: the load says how far to trust the timings.
    let loadavg = load_average();
    let mut variants = serde_json::Map::new();
    for variant in Variant::ALL {
        eprintln!("peft-bench: {} ...", variant.name());
        let args: Vec<String> = ["--variant".to_string(), variant.name().to_string()].into_iter().chain(quick_arg.clone()).collect();
        let result = run_self::<Value>(&args)?;
        eprintln!(
            "  median {:.1} ms (min {:.1}, max {:.1}), peak +{:.1} MB",
            result["median_ms"].as_f64().unwrap_or(f64::NAN),
            result["min_ms"].as_f64().unwrap_or(f64::NAN),
            result["max_ms"].as_f64().unwrap_or(f64::NAN),
            result["peak_extra_mb"].as_f64().unwrap_or(f64::NAN),
        );
        variants.insert(variant.name().into(), result);
    }
    eprintln!("peft-bench: all variants interleaved ...");
    let interleaved = run_self::<Value>(&["--interleaved".to_string()].into_iter().chain(quick_arg.clone()).collect::<Vec<_>>())?;
    for variant in Variant::ALL {
        let times = &interleaved[variant.name()];
        eprintln!(
            "  {}: median {:.1} ms (min {:.1}, max {:.1})",
            variant.name(),
            times["median_ms"].as_f64().unwrap_or(f64::NAN),
            times["min_ms"].as_f64().unwrap_or(f64::NAN),
            times["max_ms"].as_f64().unwrap_or(f64::NAN),
        );
        if let Some(Value::Object(entry)) = variants.get_mut(variant.name()) {
            entry.insert("interleaved".into(), times.clone());
        }
    }
    let layers = if quick { ATTACH_LAYERS_QUICK } else { ATTACH_LAYERS };
    eprintln!("peft-bench: attaching LoRA to a {layers}-layer 8192-wide Llama ...");
    let attach = run_self::<Value>(&["--attach".to_string(), layers.to_string()])?;
    eprintln!(
        "  get_peft_model {:.2} s, peak RSS {:.0} MB, lazy base: {}",
        attach["attach_s"].as_f64().unwrap_or(f64::NAN),
        attach["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
        attach["lazy_base"]
    );
    let report = json!({
        "implementation": "rust",
        "backend": peft_bench::backend()?.name(),
        "threads": peft_bench::THREADS,
        "quick": quick,
        "loadavg_start": loadavg,
        "loadavg_end": load_average(),
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "workload": workload,
        "variants": variants,
        "attach": attach,
    });
    let path = folder.join("rust.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("peft-bench: wrote {}", path.display());
    Ok(())
}

/// `/proc/loadavg`'s first three fields, or empty where it cannot be read.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
