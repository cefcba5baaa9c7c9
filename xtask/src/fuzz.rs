//! `cargo xtask fuzz [--time S | --runs N] [--target NAME]`: builds the `fuzz/` crate with
//! cargo-fuzz (installing it if missing; nightly), runs each target for `S` seconds (or until it
//! has executed `N` inputs) one after another, and prints the executions per target from
//! libFuzzer's final statistics.
//!
//! Every run starts from `fuzz/seeds/<target>` (committed) and grows `fuzz/corpus/<target>`
//! (ignored by git). A crash, a leak, a timeout or an allocation past the limits below fails the
//! command; libFuzzer writes the input under `fuzz/artifacts/<target>/`.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The largest single allocation a target may make (MiB): far more than any parser needs for
/// inputs of libFuzzer's sizes, so hitting it means a length was trusted before being checked.
const MALLOC_LIMIT_MB: u32 = 256;

/// The most resident memory a target may use (MiB).
const RSS_LIMIT_MB: u32 = 2048;

/// Seconds one input may take before it counts as a hang.
const TIMEOUT_S: u32 = 10;

/// When each target stops.
#[derive(Clone, Copy)]
enum Budget {
    Seconds(u64),
    Runs(u64),
}

/// One target's run.
struct Outcome {
    target: String,
    executions: Option<u64>,
    seconds: f64,
    failure: Option<String>,
}

pub(crate) fn fuzz(root: &Path, args: &[String]) -> Result<()> {
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let budget = match (value("--time"), value("--runs")) {
        (Some(_), Some(_)) => bail!("give --time or --runs, not both"),
        (Some(s), None) => Budget::Seconds(s.parse().with_context(|| format!("--time takes whole seconds, not `{s}`"))?),
        (None, Some(n)) => Budget::Runs(n.parse().with_context(|| format!("--runs takes a whole number, not `{n}`"))?),
        (None, None) => Budget::Seconds(10),
    };
    let only = value("--target");
    ensure_cargo_fuzz()?;
    let mut targets = list_targets(root)?;
    if let Some(name) = only {
        if !targets.contains(name) {
            bail!("no fuzz target `{name}`; targets: {}", targets.join(", "));
        }
        targets = vec![name.clone()];
    }
    // One build for every target, so the per-target runs below only run.
    crate::run(Command::new("cargo").current_dir(root).args(["+nightly", "fuzz", "build"]))?;
    let mut outcomes = Vec::new();
    for target in &targets {
        let outcome = run_target(root, target, budget)?;
        eprintln!("{}", row(&outcome));
        outcomes.push(outcome);
    }
    println!("\n| target | executions | seconds | exec/s | result |\n|---|---:|---:|---:|---|");
    for o in &outcomes {
        println!("{}", row(o));
    }
    let failed: Vec<&str> = outcomes.iter().filter(|o| o.failure.is_some()).map(|o| o.target.as_str()).collect();
    if !failed.is_empty() {
        bail!("fuzz targets failed: {} (inputs under fuzz/artifacts/)", failed.join(", "));
    }
    Ok(())
}

fn row(o: &Outcome) -> String {
    let execs = o.executions.map_or("?".to_string(), |n| n.to_string());
    let rate = o.executions.map_or("?".to_string(), |n| format!("{:.0}", n as f64 / o.seconds.max(1e-9)));
    let result = o.failure.clone().unwrap_or_else(|| "ok".into());
    format!("| {} | {execs} | {:.0} | {rate} | {result} |", o.target, o.seconds)
}

fn ensure_cargo_fuzz() -> Result<()> {
    let nightly = Command::new("cargo").args(["+nightly", "--version"]).output();
    if !nightly.is_ok_and(|o| o.status.success()) {
        bail!("cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly");
    }
    let installed = Command::new("cargo").args(["+nightly", "fuzz", "--version"]).output();
    if !installed.is_ok_and(|o| o.status.success()) {
        crate::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

fn list_targets(root: &Path) -> Result<Vec<String>> {
    let out = Command::new("cargo").current_dir(root).args(["+nightly", "fuzz", "list"]).output().context("cannot run cargo fuzz list")?;
    if !out.status.success() {
        bail!("cargo fuzz list failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}

fn run_target(root: &Path, target: &str, budget: Budget) -> Result<Outcome> {
    let corpus = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
    let seeds = root.join("fuzz/seeds").join(target);
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root).args(["+nightly", "fuzz", "run", target]).arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    let stop = match budget {
        Budget::Seconds(seconds) => format!("-max_total_time={seconds}"),
        Budget::Runs(runs) => format!("-runs={runs}"),
    };
    cmd.arg("--").args([
        stop,
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"),
        format!("-timeout={TIMEOUT_S}"),
        "-print_final_stats=1".into(),
    ]);
    eprintln!("$ {cmd:?}");
    let start = Instant::now();
    let out = cmd.output().with_context(|| format!("cannot start cargo fuzz run {target}"))?;
    let seconds = start.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let failure = (!out.status.success()).then(|| {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        failure_kind(&log)
    });
    Ok(Outcome { target: target.into(), executions: executions(&log), seconds, failure })
}

/// The executions libFuzzer reports at the end: `stat::number_of_executed_units: N`, else the
/// last `#N ...` status line (`#N DONE` when it ran out of time).
fn executions(log: &str) -> Option<u64> {
    let stat = log.lines().find_map(|l| l.trim().strip_prefix("stat::number_of_executed_units:")).and_then(|n| n.trim().parse().ok());
    stat.or_else(|| log.lines().rev().find_map(|l| l.strip_prefix('#')?.split_whitespace().next()?.parse().ok()))
}

/// What libFuzzer says went wrong, in a few words.
fn failure_kind(log: &str) -> String {
    const KINDS: [(&str, &str); 6] = [
        ("panicked at", "panic"),
        ("out-of-memory", "allocation past the limit"),
        ("ERROR: libFuzzer: timeout", "timeout"),
        ("ERROR: LeakSanitizer", "leak"),
        ("ERROR: AddressSanitizer", "memory error"),
        ("deadly signal", "abort"),
    ];
    KINDS.iter().find(|(needle, _)| log.contains(needle)).map_or("failed".into(), |(_, kind)| (*kind).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_come_from_the_final_stats_or_the_last_status_line() {
        let log = "#2\tINITED cov: 10\n#524288\tpulse  cov: 50\n#1000000\tDONE   cov: 80 ft: 90\nstat::number_of_executed_units: 1000001\n";
        assert_eq!(executions(log), Some(1_000_001));
        assert_eq!(executions("#2\tINITED cov: 10\n#77\tNEW    cov: 11\nDone 77 runs in 1 second(s)\n"), Some(77));
        assert_eq!(executions("no stats"), None);
    }

    #[test]
    fn failures_are_named() {
        assert_eq!(failure_kind("thread '<unnamed>' panicked at src/x.rs:1:1:\n==1== ERROR: libFuzzer: deadly signal"), "panic");
        assert_eq!(failure_kind("==1== ERROR: libFuzzer: out-of-memory (malloc(4294967296))"), "allocation past the limit");
        assert_eq!(failure_kind("exit 1"), "failed");
    }
}
