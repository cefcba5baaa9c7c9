//! Training data from CSV or JSON Lines files: rows of named text columns.

use anyhow::{Context, Result, bail};
use indexmap::IndexMap;
use std::path::Path;

/// One row: column name → text.
pub type Row = IndexMap<String, String>;

/// Reads `path` as CSV (a header row, then records) or JSON Lines (one object per line), by
/// extension. Bytes that are not UTF-8 are replaced, as real tweet corpora contain some.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the data file {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => read_csv(&text, path),
        Some("jsonl" | "json") => read_jsonl(&text, path),
        _ => bail!("{}: the data file must end in .csv or .jsonl", path.display()),
    }
}

fn read_csv(text: &str, path: &Path) -> Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().with_context(|| format!("{}: no CSV header row", path.display()))?.iter().map(str::to_string).collect();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: CSV record {} is malformed", path.display(), i + 2))?;
        rows.push(header.iter().cloned().zip(record.iter().map(str::to_string)).collect());
    }
    Ok(rows)
}

fn read_jsonl(text: &str, path: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))?;
        let Some(object) = value.as_object() else {
            bail!("{}: line {} is not a JSON object", path.display(), i + 1);
        };
        let row = object
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect();
        rows.push(row);
    }
    Ok(rows)
}

/// The values of `column` in every row; the error lists the columns the file has.
pub fn column<'a>(rows: &'a [Row], column: &str, path: &Path, flag: &str) -> Result<Vec<&'a str>> {
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        match row.get(column) {
            Some(v) => out.push(v.as_str()),
            None => {
                let have: Vec<&str> = row.keys().map(String::as_str).collect();
                bail!(
                    "{}: row {} has no column `{column}` (it has: {}); name the right one with {flag}",
                    path.display(),
                    i + 1,
                    have.join(", ")
                );
            }
        }
    }
    Ok(out)
}

/// Class names in a stable order (sorted) and each row's class index.
pub fn label_ids(labels: &[&str]) -> (Vec<String>, Vec<usize>) {
    let mut names: Vec<String> = labels.iter().map(|s| s.trim().to_string()).collect();
    names.sort();
    names.dedup();
    let ids = labels.iter().map(|l| names.iter().position(|n| n == l.trim()).unwrap_or(0)).collect();
    (names, ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn csv_with_quotes_and_bad_bytes() {
        let (_d, path) = write("d.csv", "label,text\npos,\"a, b\"\nneg,plain\n");
        let rows = read_rows(&path).expect("reads");
        assert_eq!(column(&rows, "text", &path, "--text-column").expect("text"), ["a, b", "plain"]);
        let (names, ids) = label_ids(&column(&rows, "label", &path, "--label-column").expect("labels"));
        assert_eq!((names, ids), (vec!["neg".to_string(), "pos".to_string()], vec![1, 0]));
    }

    #[test]
    fn missing_column_names_the_columns_and_the_flag() {
        let (_d, path) = write("d.jsonl", "{\"sentence\": \"hi\", \"label\": 1}\n");
        let rows = read_rows(&path).expect("reads");
        let err = column(&rows, "text", &path, "--text-column").expect_err("no text column").to_string();
        assert!(err.contains("`text`") && err.contains("sentence, label") && err.contains("--text-column"), "{err}");
        assert_eq!(column(&rows, "label", &path, "--label-column").expect("label"), ["1"]);
    }

    #[test]
    fn unknown_extension_is_refused() {
        let (_d, path) = write("d.txt", "x");
        assert!(read_rows(&path).expect_err("txt").to_string().contains(".csv or .jsonl"));
    }
}
