//! Training data from CSV or JSON Lines files: rows of named text columns.

use indexmap::IndexMap;
use std::path::{Path, PathBuf};

/// One row: column name → text.
pub type Row = IndexMap<String, String>;

/// What can be wrong with a data file; each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file cannot be read.
    #[error("cannot read the data file {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The extension is neither `.csv` nor `.jsonl`.
    #[error("{}: the data file must end in .csv or .jsonl", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A CSV record or JSON line cannot be parsed.
    #[error("{}: {what} {line} is malformed ({message}); fix that line", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// `CSV record` or `line`.
        what: &'static str,
        /// 1-based line of the file.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// The file holds no rows.
    #[error("{}: the data file holds no rows; give a file with a header and at least one row", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A row lacks the column asked for.
    #[error("{}: row {row} has no column `{column}` (it has: {}); name the right one with {flag}", path.display(), available.join(", "))]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// 1-based row.
        row: usize,
        /// The column asked for.
        column: String,
        /// The columns that row has.
        available: Vec<String>,
        /// The flag that names the column.
        flag: String,
    },
}

/// Reads `path` as CSV (a header row, then records) or JSON Lines (one object per line), by
/// extension. Bytes that are not UTF-8 are replaced, as real tweet corpora contain some.
///
/// # Errors
/// A [`DataError`]; a file without rows is [`DataError::Empty`].
pub fn read_rows(path: &Path) -> Result<Vec<Row>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Unreadable { path: path.into(), source })?;
    let text = String::from_utf8_lossy(&bytes);
    let rows = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => read_csv(&text, path)?,
        Some("jsonl" | "json") => read_jsonl(&text, path)?,
        _ => return Err(DataError::UnknownFormat { path: path.into() }),
    };
    if rows.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(rows)
}

fn malformed(path: &Path, what: &'static str, line: usize, message: impl ToString) -> DataError {
    DataError::Malformed { path: path.into(), what, line, message: message.to_string() }
}

fn read_csv(text: &str, path: &Path) -> Result<Vec<Row>, DataError> {
    if text.trim().is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().map_err(|e| malformed(path, "CSV record", 1, e))?.iter().map(str::to_string).collect();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| malformed(path, "CSV record", i + 2, e))?;
        rows.push(header.iter().cloned().zip(record.iter().map(str::to_string)).collect());
    }
    Ok(rows)
}

fn read_jsonl(text: &str, path: &Path) -> Result<Vec<Row>, DataError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| malformed(path, "line", i + 1, e))?;
        let Some(object) = value.as_object() else {
            return Err(malformed(path, "line", i + 1, "not a JSON object"));
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
///
/// # Errors
/// [`DataError::MissingColumn`] naming the row, the columns it has and `flag`.
pub fn column<'a>(rows: &'a [Row], column: &str, path: &Path, flag: &str) -> Result<Vec<&'a str>, DataError> {
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        match row.get(column) {
            Some(v) => out.push(v.as_str()),
            None => {
                return Err(DataError::MissingColumn {
                    path: path.into(),
                    row: i + 1,
                    column: column.into(),
                    available: row.keys().cloned().collect(),
                    flag: flag.into(),
                });
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
        let err = column(&rows, "text", &path, "--text-column").expect_err("no text column");
        assert!(matches!(&err, DataError::MissingColumn { row: 1, column, .. } if column == "text"), "{err}");
        let err = err.to_string();
        assert!(err.contains("`text`") && err.contains("sentence, label") && err.contains("--text-column"), "{err}");
        assert_eq!(column(&rows, "label", &path, "--label-column").expect("label"), ["1"]);
    }

    #[test]
    fn empty_files_and_bad_lines_are_typed() {
        let (_d, path) = write("d.csv", "");
        assert!(matches!(read_rows(&path), Err(DataError::Empty { .. })));
        let (_d, path) = write("d.csv", "label,text\n");
        assert!(matches!(read_rows(&path), Err(DataError::Empty { .. })));
        let (_d, path) = write("d.jsonl", "\n\n");
        assert!(matches!(read_rows(&path), Err(DataError::Empty { .. })));
        let (_d, path) = write("d.jsonl", "{\"text\": \"a\"}\n[1, 2]\n");
        assert!(matches!(read_rows(&path), Err(DataError::Malformed { line: 2, .. })));
        let (_d, path) = write("d.csv", "label,text\npos,a,extra\n");
        assert!(matches!(read_rows(&path), Err(DataError::Malformed { line: 3, .. }) | Err(DataError::Malformed { line: 2, .. })));
        let missing = std::path::Path::new("/nonexistent/d.csv");
        assert!(matches!(read_rows(missing), Err(DataError::Unreadable { .. })));
    }

    #[test]
    fn unknown_extension_is_refused() {
        let (_d, path) = write("d.txt", "x");
        assert!(read_rows(&path).expect_err("txt").to_string().contains(".csv or .jsonl"));
    }
}
