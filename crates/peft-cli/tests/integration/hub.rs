//! Hub ids on the command line, read from a Hugging Face cache laid out on disk (refs +
//! snapshots, as a download leaves it) with the tiny fixture models; downloads are switched off
//! (`HF_HUB_OFFLINE=1`), so no test reaches the network.

use crate::common;

use common::{fixtures, s, word_tokenizer_json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Puts the files of `from` into the cache as snapshot `commit` of `repo_id`, with
/// `refs/<revision>` pointing at it (`revision` `None`: reachable by its commit only).
fn cache_repo(cache: &Path, repo_id: &str, revision: Option<&str>, commit: &str, from: &Path) -> PathBuf {
    let repo = cache.join(format!("models--{}", repo_id.replace('/', "--")));
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).expect("snapshot folder");
    for entry in std::fs::read_dir(from).expect("fixture folder").flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), snapshot.join(entry.file_name())).expect("copy");
        }
    }
    if let Some(revision) = revision {
        std::fs::create_dir_all(repo.join("refs")).expect("refs folder");
        std::fs::write(repo.join("refs").join(revision), commit).expect("ref");
    }
    snapshot
}

/// A cache holding the tiny Llama as `org/tiny-llama` and the Python-made `llama_qv` adapter as
/// `org/llama-qv`, whose config names its base by id.
fn llama_cache(cache: &Path) {
    cache_repo(cache, "org/tiny-llama", Some("main"), "1111111111111111111111111111111111111111", &fixtures().join("models/llama"));
    let adapter = cache_repo(cache, "org/llama-qv", Some("main"), "2222222222222222222222222222222222222222", &fixtures().join("cases/llama_qv/adapter"));
    let path = adapter.join("adapter_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
    config["base_model_name_or_path"] = "org/tiny-llama".into();
    std::fs::write(&path, config.to_string()).expect("write config");
}

/// Runs `peft` in `cwd` (where no `org/` folder exists) with the cache `cache` and no downloads.
fn peft_in(cwd: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peft"))
        .args(args)
        .current_dir(cwd)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the peft binary runs")
}

fn logits(out: &Output) -> Vec<f64> {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    json["logits"].as_array().expect("logits").iter().map(|v| v.as_f64().expect("float")).collect()
}

const IDS: &str = "5,6,7,8,9";

#[test]
fn model_and_adapter_ids_give_the_folders_outputs() {
    let cache = tempfile::tempdir().expect("cache");
    let cwd = tempfile::tempdir().expect("cwd");
    llama_cache(cache.path());
    let by_id = peft_in(cwd.path(), cache.path(), &["logits", "--model", "org/tiny-llama", "--adapter", "org/llama-qv", "--input-ids", IDS]);
    let model = fixtures().join("models/llama");
    let adapter = fixtures().join("cases/llama_qv/adapter");
    let by_folder = peft_in(cwd.path(), cache.path(), &["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", IDS]);
    let (by_id, by_folder) = (logits(&by_id), logits(&by_folder));
    assert!(!by_id.is_empty());
    assert_eq!(by_id, by_folder);
    // The adapter changes the output, so the id did load it.
    let base = logits(&peft_in(cwd.path(), cache.path(), &["logits", "--model", "org/tiny-llama", "--input-ids", IDS]));
    assert_ne!(base, by_id);
}

#[test]
fn inspect_and_merge_take_ids() {
    let cache = tempfile::tempdir().expect("cache");
    let cwd = tempfile::tempdir().expect("cwd");
    llama_cache(cache.path());
    let out = peft_in(cwd.path(), cache.path(), &["inspect", "--json", "org/llama-qv"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["base_model"], "org/tiny-llama");
    // `merge` with both given as ids writes the same model the folders give.
    let merged = cwd.path().join("merged");
    let out = peft_in(cwd.path(), cache.path(), &["merge", "--base", "org/tiny-llama", "--adapter", "org/llama-qv", "--out", s(&merged)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("org/llama-qv into org/tiny-llama"));
    let with_adapter = logits(&peft_in(cwd.path(), cache.path(), &["logits", "--model", "org/tiny-llama", "--adapter", "org/llama-qv", "--input-ids", IDS]));
    let merged_out = logits(&peft_in(cwd.path(), cache.path(), &["logits", "--model", s(&merged), "--input-ids", IDS]));
    let diff = with_adapter.iter().zip(&merged_out).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(diff < 1e-4, "merged differs by {diff}");
}

#[test]
fn revisions_pick_their_snapshot() {
    let cache = tempfile::tempdir().expect("cache");
    let cwd = tempfile::tempdir().expect("cwd");
    llama_cache(cache.path());
    // `v1` of the adapter repository is another adapter: the DoRA one made for the same base.
    cache_repo(cache.path(), "org/llama-qv", Some("v1"), "3333333333333333333333333333333333333333", &fixtures().join("cases/llama_dora/adapter"));
    let run = |extra: &[&str]| {
        let mut args = vec!["logits", "--model", "org/tiny-llama", "--adapter", "org/llama-qv", "--input-ids", IDS];
        args.extend_from_slice(extra);
        peft_in(cwd.path(), cache.path(), &args)
    };
    let main = logits(&run(&[]));
    let v1 = logits(&run(&["--adapter-revision", "v1"]));
    let by_commit = logits(&run(&["--adapter-revision", "3333333333333333333333333333333333333333"]));
    let dora = fixtures().join("cases/llama_dora/adapter");
    let dora_folder = logits(&peft_in(cwd.path(), cache.path(), &["logits", "--model", "org/tiny-llama", "--adapter", s(&dora), "--input-ids", IDS]));
    assert_ne!(main, v1);
    assert_eq!(v1, dora_folder);
    assert_eq!(by_commit, dora_folder);
    let out = run(&["--revision", "v9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`config.json`") && err.contains("revision `v9`") && err.contains("org/tiny-llama"), "{err}");
}

#[test]
fn offline_a_missing_file_is_named_with_the_way_to_get_it() {
    let cache = tempfile::tempdir().expect("cache");
    let cwd = tempfile::tempdir().expect("cwd");
    llama_cache(cache.path());
    let snapshot = cache.path().join("models--org--llama-qv/snapshots/2222222222222222222222222222222222222222");
    std::fs::remove_file(snapshot.join("adapter_model.safetensors")).expect("remove");
    let out = peft_in(cwd.path(), cache.path(), &["logits", "--model", "org/tiny-llama", "--adapter", "org/llama-qv", "--input-ids", IDS]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("`adapter_model.safetensors`") && err.contains("HF_HUB_OFFLINE") && err.contains("hf download org/llama-qv --revision main"), "{err}");
    // A repository the cache has never seen names the first file it needs.
    let out = peft_in(cwd.path(), cache.path(), &["logits", "--model", "org/unknown", "--input-ids", IDS]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`config.json`") && err.contains("org/unknown"), "{err}");
}

#[test]
fn a_local_folder_wins_over_an_id() {
    let cache = tempfile::tempdir().expect("cache");
    let cwd = tempfile::tempdir().expect("cwd");
    llama_cache(cache.path());
    // `org/tiny-llama` as a folder of the working directory: the Mistral fixture, not the cached Llama.
    let local = cwd.path().join("org/tiny-llama");
    std::fs::create_dir_all(&local).expect("folder");
    for entry in std::fs::read_dir(fixtures().join("models/mistral")).expect("mistral").flatten() {
        std::fs::copy(entry.path(), local.join(entry.file_name())).expect("copy");
    }
    let local_out = logits(&peft_in(cwd.path(), cache.path(), &["logits", "--model", "org/tiny-llama", "--input-ids", IDS]));
    let mistral = fixtures().join("models/mistral");
    let mistral_out = logits(&peft_in(cwd.path(), cache.path(), &["logits", "--model", s(&mistral), "--input-ids", IDS]));
    assert_eq!(local_out, mistral_out);
}

/// `peft predict --adapter ID` alone: the base comes from the id the adapter's config names.
#[test]
fn predict_finds_the_base_by_the_id_its_adapter_names() {
    let cache = tempfile::tempdir().expect("cache");
    let cwd = tempfile::tempdir().expect("cwd");
    llama_cache(cache.path());
    std::fs::write(cache.path().join("models--org--tiny-llama/snapshots/1111111111111111111111111111111111111111/tokenizer.json"), word_tokenizer_json()).expect("write tokenizer");
    let by_id = peft_in(cwd.path(), cache.path(), &["predict", "--adapter", "org/llama-qv", "--text", "w5 w6 w7", "--max-new-tokens", "3"]);
    assert!(by_id.status.success(), "{}", String::from_utf8_lossy(&by_id.stderr));
    let tokenizer = cwd.path().join("tokenizer.json");
    std::fs::write(&tokenizer, word_tokenizer_json()).expect("write tokenizer");
    let model = fixtures().join("models/llama");
    let adapter = fixtures().join("cases/llama_qv/adapter");
    let by_folder = peft_in(
        cwd.path(),
        cache.path(),
        &["predict", "--adapter", s(&adapter), "--model", s(&model), "--tokenizer", s(&tokenizer), "--text", "w5 w6 w7", "--max-new-tokens", "3"],
    );
    assert!(by_folder.status.success(), "{}", String::from_utf8_lossy(&by_folder.stderr));
    assert!(!by_id.stdout.is_empty());
    assert_eq!(by_id.stdout, by_folder.stdout);
}
