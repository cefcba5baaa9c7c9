//! Reading transformers' `config.json`, shared by every family's config type.

use peft_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The text of `path`, or of `path/config.json` when `path` is a folder, with the file read.
///
/// Fails with [`Error::Io`] naming the file.
pub(crate) fn read(path: impl AsRef<Path>) -> Result<(String, PathBuf)> {
    let mut path = path.as_ref().to_path_buf();
    if path.is_dir() {
        path = path.join("config.json");
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("cannot read", &path, e))?;
    Ok((text, path))
}

/// Parses a config: string fields named in `checks` must hold a supported value (checked before
/// typed parsing, so an unknown name is [`Error::Unsupported`] rather than a serde message), then
/// the typed parse; when the file has `id2label`, its length is returned as the label count.
///
/// Fails with [`Error::Json`] naming `path` when the text is malformed.
pub(crate) fn parse<T: DeserializeOwned>(text: &str, path: &Path, checks: &[(&str, &[&str])]) -> Result<(T, Option<usize>)> {
    let json_error = |source| Error::Json { path: path.into(), source };
    let value: serde_json::Value = serde_json::from_str(text).map_err(json_error)?;
    for (key, supported) in checks {
        if let Some(found) = value.get(*key).and_then(|v| v.as_str())
            && !supported.contains(&found)
        {
            return Err(Error::Unsupported { what: format!("{key} `{found}`"), supported: supported.join(", ") });
        }
    }
    let labels = value.get("id2label").and_then(|v| v.as_object()).map(|m| m.len());
    Ok((serde_json::from_value(value).map_err(json_error)?, labels))
}

/// Fails with [`Error::InvalidConfig`] naming the first of `fields` that is 0: a model with no
/// layers, an empty vocabulary or a zero width cannot be built (or divides by zero later).
pub(crate) fn require_positive(fields: &[(&'static str, usize)]) -> Result<()> {
    match fields.iter().find(|(_, value)| *value == 0) {
        Some((field, _)) => Err(Error::config(field, 0, "a positive number; copy the value from the checkpoint's config.json")),
        None => Ok(()),
    }
}

/// One token id or several (`"eos_token_id": [128001, 128009]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// Every id of an optional field (`eos_token_id`), in order; none when absent.
    pub fn all(ids: Option<&TokenIds>) -> Vec<u32> {
        match ids {
            None => Vec::new(),
            Some(TokenIds::One(id)) => vec![*id],
            Some(TokenIds::Many(ids)) => ids.clone(),
        }
    }
}

/// The field an [`Error::InvalidConfig`] names, for the families' config tests.
#[cfg(test)]
pub(crate) fn invalid_field(result: Result<()>) -> &'static str {
    match result {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}
