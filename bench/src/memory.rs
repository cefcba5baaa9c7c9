//! Resident memory of this process, read from `/proc/self/status` (Linux).
//!
//! Allocation counters would miss what the backend allocates outside Rust's allocator and what
//! the allocator keeps after a free; resident memory is what the machine actually pays.

use anyhow::{Context, Result};

/// Resident set size now and its high-water mark, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rss {
    /// `VmRSS`: resident now.
    pub current: u64,
    /// `VmHWM`: the most resident since the process started or since [`reset_peak`].
    pub peak: u64,
}

/// Reads `VmRSS` and `VmHWM` of this process.
pub fn rss() -> Result<Rss> {
    let status = std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status (Linux only)")?;
    Ok(Rss { current: field_kb(&status, "VmRSS:")? * 1024, peak: field_kb(&status, "VmHWM:")? * 1024 })
}

/// Resets `VmHWM` to the current RSS, so that a later peak measures only what comes after.
///
/// Returns `false` where the kernel does not allow it (writing `5` to `clear_refs` needs Linux
/// 4.0+); the peak then also covers what came before, and callers say so.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `bytes` in MiB, for reports.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn field_kb(status: &str, name: &str) -> Result<u64> {
    let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no `{name}` in /proc/self/status"))?;
    let value = line[name.len()..].trim().trim_end_matches("kB").trim();
    value.parse().with_context(|| format!("cannot read `{line}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(field_kb(status, "VmHWM:").ok(), Some(2048));
        assert_eq!(field_kb(status, "VmRSS:").ok(), Some(1024));
        assert!(field_kb(status, "VmSwap:").is_err());
    }

    #[test]
    fn peak_is_at_least_current() {
        let r = rss().expect("Linux");
        assert!(r.peak >= r.current && r.current > 0);
    }
}
