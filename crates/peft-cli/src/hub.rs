//! Hub ids on the command line (`--model org/name`, `--adapter org/name`): resolved to folders of
//! the local Hugging Face cache, downloaded when missing and a network is there. A folder that
//! exists always wins over an id.

use anyhow::{Context, Result};
use peft::io::hub::{Hub, RepoFiles};
use std::path::{Path, PathBuf};

/// `--model`: a folder or GGUF file as given, else the cached snapshot of the Hub id at `revision`.
pub fn model(given: &Path, revision: Option<&str>) -> Result<PathBuf> {
    resolve(given, revision, RepoFiles::Model).with_context(|| format!("cannot find the model `{}`", given.display()))
}

/// `--adapter`: a folder as given, else the cached snapshot of the Hub id at `revision`.
pub fn adapter(given: &Path, revision: Option<&str>) -> Result<PathBuf> {
    resolve(given, revision, RepoFiles::Adapter).with_context(|| format!("cannot find the adapter `{}`", given.display()))
}

fn resolve(given: &Path, revision: Option<&str>, files: RepoFiles) -> Result<PathBuf> {
    match given.to_str() {
        Some(text) => Ok(Hub::from_env().resolve(text, revision, files)?),
        None => Ok(given.to_path_buf()),
    }
}

/// The name an extra `--adapter` gets: its folder's name, or the repository's name when the
/// folder is a Hub cache snapshot (`models--org--name/snapshots/<commit>`), whose own name is a
/// commit hash.
pub fn adapter_name(dir: &Path) -> String {
    let folder = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let parent = dir.parent();
    let repo = parent.filter(|p| folder(p).as_deref() == Some("snapshots")).and_then(Path::parent).and_then(folder);
    if let Some(name) = repo.as_deref().and_then(|r| r.strip_prefix("models--")).and_then(|r| r.rsplit("--").next()) {
        return name.to_string();
    }
    folder(dir).unwrap_or_else(|| "adapter".into())
}

#[cfg(test)]
mod tests {
    use super::adapter_name;
    use std::path::Path;

    #[test]
    fn cached_adapters_are_named_after_their_repository() {
        assert_eq!(adapter_name(Path::new("/c/models--org--tweets/snapshots/0123abc")), "tweets");
        assert_eq!(adapter_name(Path::new("out/tweets")), "tweets");
        assert_eq!(adapter_name(Path::new("/x/snapshots/abc")), "abc");
    }
}
