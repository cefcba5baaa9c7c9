//! Measuring in child processes: each measure runs in this program started again, so that its
//! peak memory is its own, and prints its result as one JSON line.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::process::{Command, Stdio};

/// Prints `value` as one JSON line (what [`run_self`] reads back).
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Runs this program again with `args` (its standard error shown as it goes) and parses the last
/// line it prints as JSON.
pub fn run_self<T: DeserializeOwned>(args: &[String]) -> Result<T> {
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let output = Command::new(&exe)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {} {}", exe.display(), args.join(" ")))?;
    if !output.status.success() {
        bail!("`{} {}` failed with {}", exe.display(), args.join(" "), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().context("the child printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("the child printed `{line}`, not JSON"))
}
