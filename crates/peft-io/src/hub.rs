//! Hugging Face Hub ids (`org/name`) resolved to folders of the local Hub cache, the layout the
//! Python `huggingface_hub` library and the `hf-hub` crate share:
//!
//! ```text
//! $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)
//!   models--org--name/
//!     refs/main                 the commit a revision (branch or tag) points to
//!     snapshots/<commit>/...    the repository's files at that commit
//! ```
//!
//! A path that exists always wins over an id. Files missing from the cache are downloaded when
//! the `download` feature is on and `HF_HUB_OFFLINE` is not set; otherwise the error names the
//! file that is missing and how to fetch it.
//!
//! ```
//! use peft_io::hub::{Hub, RepoFiles};
//!
//! // A cache laid out by hand: the same layout a download leaves.
//! let cache = tempfile::tempdir()?;
//! let snapshot = cache.path().join("models--org--tiny/snapshots/0123abcd");
//! std::fs::create_dir_all(&snapshot)?;
//! std::fs::create_dir_all(cache.path().join("models--org--tiny/refs"))?;
//! std::fs::write(cache.path().join("models--org--tiny/refs/main"), "0123abcd")?;
//! std::fs::write(snapshot.join("adapter_config.json"), "{}")?;
//! std::fs::write(snapshot.join("adapter_model.safetensors"), "")?;
//!
//! let hub = Hub::with_cache(cache.path()).offline(true);
//! assert_eq!(hub.resolve("org/tiny", None, RepoFiles::Adapter)?, snapshot);
//! // Offline and not in the cache: the error says which file is missing.
//! let err = hub.resolve("org/other", None, RepoFiles::Adapter).unwrap_err();
//! assert!(err.to_string().contains("adapter_config.json"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use peft_core::{Error, Result};
use std::path::{Path, PathBuf};

use crate::weights::{MODEL_FILE, MODEL_INDEX_FILE};

/// The revision used when none is asked for.
pub const DEFAULT_REVISION: &str = "main";

/// The files of a model folder besides `config.json` and the weights: generation settings, the
/// tokenizer's files and image preprocessing. Downloaded with a model when the repository has
/// them, and copied next to merged weights (`peft merge`).
pub const MODEL_SIDE_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
];

/// What a repository must hold to be usable, which decides the files checked and downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoFiles {
    /// A transformers model: `config.json` and its safetensors weights (one file, or the index
    /// and every shard it lists); the tokenizer and generation files come along when present.
    Model,
    /// A PEFT adapter: `adapter_config.json` and `adapter_model.safetensors`.
    Adapter,
}

impl RepoFiles {
    /// Files fetched with the required ones when the repository has them.
    #[cfg(feature = "download")]
    fn optional(self) -> &'static [&'static str] {
        match self {
            RepoFiles::Model => MODEL_SIDE_FILES,
            RepoFiles::Adapter => &["labels.json", "tokenizer.json", "README.md"],
        }
    }
}

/// Whether `text` has the shape of a Hub repository id: `name` or `org/name`, each part letters,
/// digits, `-`, `_` and `.` (not starting with `.` or `-`, no `..` or `--`).
pub fn is_repo_id(text: &str) -> bool {
    let parts: Vec<&str> = text.split('/').collect();
    if parts.is_empty() || parts.len() > 2 {
        return false;
    }
    parts.iter().all(|p| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with(['.', '-'])
            && !p.contains("..")
            && !p.contains("--")
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    })
}

/// The local Hub cache, and whether (and from where) missing files may be downloaded.
#[derive(Debug, Clone)]
pub struct Hub {
    cache: PathBuf,
    offline: bool,
    endpoint: Option<String>,
}

impl Hub {
    /// The cache and settings of the environment, as the Python library reads them:
    /// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
    /// `~/.cache/huggingface/hub`; `HF_HUB_OFFLINE=1` forbids downloads; `HF_ENDPOINT` replaces
    /// `https://huggingface.co`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let cache = var("HF_HUB_CACHE")
            .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
            .or_else(|| var("HOME").map(|h| h.join(".cache/huggingface/hub")))
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty());
        Hub { cache, offline, endpoint }
    }

    /// The cache at `dir`, downloads allowed (from `https://huggingface.co`).
    pub fn with_cache(dir: impl Into<PathBuf>) -> Self {
        Hub { cache: dir.into(), offline: false, endpoint: None }
    }

    /// Forbids (or allows) downloads: only the cache is read.
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Downloads from `endpoint` instead of `https://huggingface.co` (a mirror).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The cache folder.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// The cache folder of model repository `repo_id` (`models--org--name`).
    pub fn repo_dir(&self, repo_id: &str) -> PathBuf {
        self.cache.join(format!("models--{}", repo_id.replace('/', "--")))
    }

    /// The snapshot folder of `repo_id` at `revision` (a branch or tag through `refs/`, or a
    /// commit hash), if the cache has one.
    pub fn snapshot(&self, repo_id: &str, revision: &str) -> Option<PathBuf> {
        let repo = self.repo_dir(repo_id);
        let direct = repo.join("snapshots").join(revision);
        if direct.is_dir() {
            return Some(direct);
        }
        let commit = std::fs::read_to_string(repo.join("refs").join(revision)).ok()?;
        let dir = repo.join("snapshots").join(commit.trim());
        dir.is_dir().then_some(dir)
    }

    /// A local folder or file for `name_or_path`: the path itself when it exists; else, for a
    /// Hub id, its snapshot in the cache at `revision` (default `main`), downloading the files
    /// `files` needs when they are missing and downloads are allowed.
    ///
    /// # Errors
    /// [`Error::Io`] (not found) naming the first file missing from the cache, with the reason no
    /// download happened (offline, no `download` feature, or the network's error) and the
    /// command that fetches it; a name that is neither a path nor an id is returned unchanged
    /// for the caller's own error.
    pub fn resolve(&self, name_or_path: &str, revision: Option<&str>, files: RepoFiles) -> Result<PathBuf> {
        let path = PathBuf::from(name_or_path);
        if path.exists() || !is_repo_id(name_or_path) {
            return Ok(path);
        }
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        if let Some(dir) = self.snapshot(name_or_path, revision) {
            match missing_files(&dir, files) {
                Ok(()) => return Ok(dir),
                Err(missing) => return self.fetch_or_explain(name_or_path, revision, files, &missing, Some(&dir)),
            }
        }
        let first = match files {
            RepoFiles::Model => "config.json",
            RepoFiles::Adapter => peft_core::CONFIG_FILE,
        };
        self.fetch_or_explain(name_or_path, revision, files, first, None)
    }

    /// Downloads the repository's files, or explains why `missing` is not there.
    fn fetch_or_explain(&self, repo_id: &str, revision: &str, files: RepoFiles, missing: &str, snapshot: Option<&Path>) -> Result<PathBuf> {
        let reason = if self.offline {
            "downloads are off: HF_HUB_OFFLINE".to_string()
        } else {
            match self.download(repo_id, revision, files) {
                Ok(dir) => return Ok(dir),
                Err(reason) => reason,
            }
        };
        let where_ = snapshot.map(|s| s.join(missing)).unwrap_or_else(|| self.repo_dir(repo_id));
        let message = format!(
            "`{repo_id}` is no local folder, and `{missing}` of the Hub repository `{repo_id}` (revision `{revision}`) is not in the Hugging Face cache {} and was not downloaded ({reason}). \
             Fetch it where a network is (`hf download {repo_id} --revision {revision}`, or any `peft` command run online) into this cache, \
             point HF_HUB_CACHE / HF_HOME at a cache that holds it, or pass a local folder instead of the id",
            self.cache.display()
        );
        Err(Error::io("cannot find", where_, std::io::Error::new(std::io::ErrorKind::NotFound, message)))
    }

    #[cfg(not(feature = "download"))]
    fn download(&self, _repo_id: &str, _revision: &str, _files: RepoFiles) -> std::result::Result<PathBuf, String> {
        Err("this build does not download: build the `peft` command with `--features hub` (the library: feature `hub` of peft)".into())
    }

    /// Fetches the required and present optional files through `hf-hub`, with a progress bar,
    /// into this cache; the reason as text when it fails.
    #[cfg(feature = "download")]
    fn download(&self, repo_id: &str, revision: &str, files: RepoFiles) -> std::result::Result<PathBuf, String> {
        use hf_hub::api::sync::ApiBuilder;
        use hf_hub::{Repo, RepoType};
        let mut builder = ApiBuilder::from_cache(hf_hub::Cache::new(self.cache.clone())).with_progress(true);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Ok(token) = std::env::var("HF_TOKEN") {
            builder = builder.with_token(Some(token));
        }
        let api = builder.build().map_err(|e| format!("cannot start a download: {e}"))?;
        let repo = api.repo(Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string()));
        let info = repo.info().map_err(|e| format!("the Hub could not be reached: {e}"))?;
        let listed: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
        let mut wanted: Vec<String> = match files {
            RepoFiles::Model if listed.contains(&MODEL_FILE) => vec!["config.json".into(), MODEL_FILE.into()],
            RepoFiles::Model => vec!["config.json".into(), MODEL_INDEX_FILE.into()],
            RepoFiles::Adapter => vec![peft_core::CONFIG_FILE.into(), crate::adapter::WEIGHTS_FILE.into()],
        };
        wanted.extend(files.optional().iter().filter(|f| listed.contains(f)).map(|f| f.to_string()));
        let mut last = None;
        for file in &wanted {
            let got = repo.get(file).map_err(|e| format!("downloading `{file}` failed: {e}"))?;
            if file == MODEL_INDEX_FILE {
                for shard in shard_files(&got).map_err(|e| e.to_string())? {
                    repo.get(&shard).map_err(|e| format!("downloading `{shard}` failed: {e}"))?;
                }
            }
            last = Some(got);
        }
        // Every file lands in the snapshot of the commit the revision points to.
        last.and_then(|f| f.parent().map(Path::to_path_buf)).ok_or_else(|| "nothing was downloaded".to_string())
    }
}

/// `Ok` when `dir` holds what `files` needs, else the name of the first missing file.
fn missing_files(dir: &Path, files: RepoFiles) -> std::result::Result<(), String> {
    let required: &[&str] = match files {
        RepoFiles::Model => &["config.json"],
        RepoFiles::Adapter => &[peft_core::CONFIG_FILE, crate::adapter::WEIGHTS_FILE],
    };
    if let Some(missing) = required.iter().find(|f| !dir.join(f).is_file()) {
        return Err(missing.to_string());
    }
    if files == RepoFiles::Model && !dir.join(MODEL_FILE).is_file() {
        let index = dir.join(MODEL_INDEX_FILE);
        if !index.is_file() {
            return Err(MODEL_FILE.to_string());
        }
        let shards = shard_files(&index).map_err(|_| MODEL_INDEX_FILE.to_string())?;
        if let Some(missing) = shards.into_iter().find(|s| !dir.join(s).is_file()) {
            return Err(missing);
        }
    }
    Ok(())
}

/// The shard files a `model.safetensors.index.json` lists, each once.
fn shard_files(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io("cannot read", index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Json { path: index.to_path_buf(), source: e })?;
    let mut shards: Vec<String> =
        json.get("weight_map").and_then(|m| m.as_object()).into_iter().flatten().filter_map(|(_, v)| v.as_str().map(str::to_string)).collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// [`Hub::resolve`] with the environment's cache and settings ([`Hub::from_env`]).
///
/// # Errors
/// As [`Hub::resolve`].
pub fn resolve(name_or_path: &str, revision: Option<&str>, files: RepoFiles) -> Result<PathBuf> {
    Hub::from_env().resolve(name_or_path, revision, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache with `org/name` at `revision` -> commit `sha`, holding `files` (empty files).
    fn cache_with(root: &Path, revision: &str, sha: &str, files: &[&str]) -> PathBuf {
        let repo = root.join("models--org--name");
        let snapshot = repo.join("snapshots").join(sha);
        std::fs::create_dir_all(&snapshot).expect("snapshot dir");
        std::fs::create_dir_all(repo.join("refs")).expect("refs dir");
        std::fs::write(repo.join("refs").join(revision), sha).expect("ref");
        for f in files {
            std::fs::write(snapshot.join(f), "{}").expect("file");
        }
        snapshot
    }

    #[test]
    fn ids_and_paths_are_told_apart() {
        for id in ["gpt2", "org/name", "HuggingFaceTB/SmolLM2-135M", "google/vit-base-patch16-224-in21k", "a.b/c_d"] {
            assert!(is_repo_id(id), "{id}");
        }
        for not in ["", "/abs/path", "./rel", "a/b/c", "../up", "org/", "org//name", "a b", ".hidden", "org/na--me", "C:\\x"] {
            assert!(!is_repo_id(not), "{not}");
        }
    }

    #[test]
    fn revisions_follow_refs_or_name_a_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let main = cache_with(dir.path(), "main", "aaaa", &["config.json", "model.safetensors"]);
        let v1 = cache_with(dir.path(), "v1", "bbbb", &["config.json", "model.safetensors"]);
        let hub = Hub::with_cache(dir.path()).offline(true);
        assert_eq!(hub.resolve("org/name", None, RepoFiles::Model).expect("main"), main);
        assert_eq!(hub.resolve("org/name", Some("v1"), RepoFiles::Model).expect("v1"), v1);
        assert_eq!(hub.resolve("org/name", Some("bbbb"), RepoFiles::Model).expect("commit"), v1);
        let err = hub.resolve("org/name", Some("v2"), RepoFiles::Model).expect_err("no such revision").to_string();
        assert!(err.contains("`config.json`") && err.contains("revision `v2`") && err.contains("HF_HUB_OFFLINE"), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        cache_with(dir.path(), "main", "cccc", &["config.json"]);
        let hub = Hub::with_cache(dir.path()).offline(true);
        let err = hub.resolve("org/name", None, RepoFiles::Model).expect_err("no weights").to_string();
        assert!(err.contains("`model.safetensors`") && err.contains("hf download org/name --revision main"), "{err}");
        let err = hub.resolve("org/name", None, RepoFiles::Adapter).expect_err("no adapter").to_string();
        assert!(err.contains("`adapter_config.json`"), "{err}");
    }

    #[test]
    fn shards_listed_in_the_index_must_all_be_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snap = cache_with(dir.path(), "main", "dddd", &["config.json", "model-00001-of-00002.safetensors"]);
        let index = r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;
        std::fs::write(snap.join(MODEL_INDEX_FILE), index).expect("index");
        let hub = Hub::with_cache(dir.path()).offline(true);
        let err = hub.resolve("org/name", None, RepoFiles::Model).expect_err("a shard is missing").to_string();
        assert!(err.contains("`model-00002-of-00002.safetensors`"), "{err}");
        std::fs::write(snap.join("model-00002-of-00002.safetensors"), "").expect("shard");
        assert_eq!(hub.resolve("org/name", None, RepoFiles::Model).expect("complete"), snap);
    }

    #[test]
    fn a_local_path_wins_over_an_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        cache_with(dir.path(), "main", "eeee", &["config.json", "model.safetensors"]);
        let local = dir.path().join("org/name");
        std::fs::create_dir_all(&local).expect("local");
        let hub = Hub::with_cache(dir.path()).offline(true);
        let id = local.to_str().expect("utf-8 path");
        assert_eq!(hub.resolve(id, None, RepoFiles::Model).expect("path"), local);
        // Not an id and not there: handed back for the caller's own error.
        assert_eq!(hub.resolve("no/such/folder", None, RepoFiles::Model).expect("unchanged"), PathBuf::from("no/such/folder"));
    }

    #[test]
    fn an_unreachable_hub_still_names_the_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Port 9 (discard) on the loopback refuses at once: no network is needed or reached.
        let hub = Hub::with_cache(dir.path()).with_endpoint("http://127.0.0.1:9");
        let err = hub.resolve("org/name", None, RepoFiles::Adapter).expect_err("unreachable").to_string();
        assert!(err.contains("`adapter_config.json`") && err.contains("was not downloaded ("), "{err}");
    }
}
