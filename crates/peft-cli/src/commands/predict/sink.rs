//! Where `peft predict`'s records go: JSON Lines (stdout or a .jsonl file) or a CSV file.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::Path;

/// Where predictions go: JSON Lines (stdout or a .jsonl file) or a CSV file.
pub(super) enum Sink {
    Lines(Box<dyn Write>),
    Csv { writer: Box<csv::Writer<std::fs::File>>, header: Option<Vec<String>> },
}

impl Sink {
    /// JSON Lines on stdout without a path; else the file, by its extension.
    pub(super) fn open(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else { return Ok(Sink::Lines(Box::new(std::io::BufWriter::new(std::io::stdout())))) };
        let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Ok(Sink::Csv { writer: Box::new(csv::Writer::from_writer(file)), header: None }),
            Some("jsonl" | "json") => Ok(Sink::Lines(Box::new(std::io::BufWriter::new(file)))),
            _ => bail!("{}: --output must end in .jsonl or .csv", path.display()),
        }
    }

    /// One record: the `lead` fields (the row's text; a question and its context), then
    /// `prediction`'s (in CSV, probabilities become one `p_<class>` column each, word labels
    /// `word/label` pairs, vectors a JSON array).
    pub(super) fn write(&mut self, lead: &[(&str, &str)], prediction: serde_json::Value) -> Result<()> {
        let mut record = serde_json::Map::new();
        for (key, value) in lead {
            record.insert((*key).into(), (*value).into());
        }
        for (key, value) in prediction.as_object().into_iter().flatten() {
            record.insert(key.clone(), value.clone());
        }
        match self {
            Sink::Lines(out) => writeln!(out, "{}", serde_json::Value::Object(record))?,
            Sink::Csv { writer, header } => {
                let cells = csv_cells(&record);
                if header.is_none() {
                    let names: Vec<String> = cells.iter().map(|(k, _)| k.clone()).collect();
                    writer.write_record(&names)?;
                    *header = Some(names);
                }
                writer.write_record(cells.iter().map(|(_, v)| v))?;
            }
        }
        Ok(())
    }

    /// Flushes what is buffered.
    pub(super) fn finish(self) -> Result<()> {
        match self {
            Sink::Lines(mut out) => out.flush()?,
            Sink::Csv { mut writer, .. } => writer.flush()?,
        }
        Ok(())
    }
}

/// A prediction as flat CSV cells.
fn csv_cells(record: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    let mut cells = Vec::new();
    for (key, value) in record {
        match (key.as_str(), value) {
            ("probabilities", serde_json::Value::Object(p)) => cells.extend(p.iter().map(|(c, v)| (format!("p_{c}"), v.to_string()))),
            ("words", serde_json::Value::Array(words)) => {
                let pairs: Vec<String> = words
                    .iter()
                    .map(|w| format!("{}/{}", w["word"].as_str().unwrap_or(""), w["label"].as_str().unwrap_or("")))
                    .collect();
                cells.push(("words".into(), pairs.join(" ")));
            }
            (_, serde_json::Value::String(s)) => cells.push((key.clone(), s.clone())),
            (_, other) => cells.push((key.clone(), other.to_string())),
        }
    }
    cells
}
