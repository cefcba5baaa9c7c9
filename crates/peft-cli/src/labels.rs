//! Class names kept beside an adapter: `labels.json` in the adapter folder.
//!
//! The Python library reads only `adapter_config.json` and the weights, so an extra file leaves
//! it untouched; the file holds transformers' `id2label` / `label2id`, the fields a model's
//! `config.json` carries, so the names can be copied there by hand.

use anyhow::{Context, Result, bail};
use std::path::Path;

/// The file `peft train` writes beside `adapter_config.json`.
pub const LABELS_FILE: &str = "labels.json";

/// Writes `names` (class `i` is `names[i]`) to `dir/labels.json`.
pub fn write(dir: &Path, names: &[String]) -> Result<()> {
    let id2label: serde_json::Map<String, serde_json::Value> = names.iter().enumerate().map(|(i, n)| (i.to_string(), n.clone().into())).collect();
    let label2id: serde_json::Map<String, serde_json::Value> = names.iter().enumerate().map(|(i, n)| (n.clone(), i.into())).collect();
    let json = serde_json::json!({ "id2label": id2label, "label2id": label2id });
    let path = dir.join(LABELS_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// The class names of `dir/labels.json`, or `None` when the folder has none.
pub fn read(dir: &Path) -> Result<Option<Vec<String>>> {
    let path = dir.join(LABELS_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    id2label(&json).with_context(|| format!("{}: `id2label` must map \"0\", \"1\", ... to names", path.display()))
}

/// The names of a model folder's `config.json` `id2label` (transformers writes `LABEL_0`.. when
/// it was never set), or `None`.
pub fn from_model_config(dir: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    id2label(&json).ok().flatten()
}

/// `id2label` of a JSON object, in id order; an error when ids are missing or not numbers.
fn id2label(json: &serde_json::Value) -> Result<Option<Vec<String>>> {
    let Some(map) = json.get("id2label").and_then(|v| v.as_object()) else { return Ok(None) };
    let mut names = vec![None; map.len()];
    for (id, name) in map {
        let Some(slot) = id.parse::<usize>().ok().and_then(|i| names.get_mut(i)) else { bail!("id `{id}` is not one of 0..{}", map.len()) };
        *slot = Some(name.as_str().map_or_else(|| name.to_string(), str::to_string));
    }
    Ok(Some(names.into_iter().map(Option::unwrap_or_default).collect()))
}

/// `LABEL_0`, `LABEL_1`, ...: transformers' names for classes nobody named.
pub fn generic(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("LABEL_{i}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_id_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read(dir.path()).expect("no file"), None);
        let names: Vec<String> = ["sport", "business", "tech"].map(String::from).to_vec();
        write(dir.path(), &names).expect("write");
        assert_eq!(read(dir.path()).expect("read"), Some(names));
        std::fs::write(dir.path().join(LABELS_FILE), r#"{"id2label": {"0": "a", "5": "b"}}"#).expect("write");
        assert!(read(dir.path()).is_err());
        assert_eq!(generic(2), ["LABEL_0", "LABEL_1"]);
    }
}
