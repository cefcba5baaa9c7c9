//! The guide in `docs/` stays whole: every page is in the table of contents and compiled as a doc
//! test, its links resolve, and its code blocks are of a kind that is either compiled or plainly
//! not Rust.

use std::path::PathBuf;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// `(file name, text)` of every Markdown page.
fn pages() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(docs())
        .expect("docs/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| {
            let text = std::fs::read_to_string(docs().join(&name)).expect("a readable page");
            (name, text)
        })
        .collect();
    out.sort();
    out
}

/// The targets of the relative `](target)` links of a page (anchors dropped).
fn local_links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|target| !target.is_empty() && !target.contains("://") && !target.starts_with('#'))
        .map(|target| target.split('#').next().unwrap_or(target).to_string())
        .collect()
}

#[test]
fn every_page_is_compiled_as_a_doc_test() {
    let lib = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).expect("lib.rs");
    let missing: Vec<String> = pages()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !lib.contains(&format!("include_str!(\"../../../docs/{name}\")")))
        .collect();
    assert!(missing.is_empty(), "add these pages to `mod guide` in crates/peft/src/lib.rs: {missing:?}");
}

#[test]
fn every_page_is_in_the_table_of_contents() {
    let summary = std::fs::read_to_string(docs().join("SUMMARY.md")).expect("docs/SUMMARY.md");
    let listed = local_links(&summary);
    let missing: Vec<String> =
        pages().into_iter().map(|(name, _)| name).filter(|name| name != "SUMMARY.md" && !listed.contains(name)).collect();
    assert!(missing.is_empty(), "list these pages in docs/SUMMARY.md: {missing:?}");
}

#[test]
fn local_links_resolve() {
    for (name, text) in pages() {
        for target in local_links(&text) {
            assert!(docs().join(&target).exists(), "docs/{name} links to `{target}`, which does not exist");
        }
    }
}

#[test]
fn code_blocks_are_compiled_or_plainly_not_rust() {
    // Rustdoc compiles `rust` and untagged blocks; `ignore` would let an example go stale.
    const KINDS: &[&str] = &["rust", "rust,no_run", "text", "toml", "sh", "json"];
    for (name, text) in pages() {
        let mut open = false;
        for line in text.lines() {
            let Some(info) = line.trim_start().strip_prefix("```") else { continue };
            if open {
                open = false;
                continue;
            }
            open = true;
            assert!(KINDS.contains(&info.trim()), "docs/{name}: a ```{info} block; use one of {KINDS:?}");
        }
        assert!(!open, "docs/{name}: a code block is not closed");
    }
}

#[test]
fn every_method_page_has_a_paper_and_a_status() {
    let methods = ["lora.md", "adalora.md", "ia3.md", "prompt-tuning.md", "p-tuning.md", "prefix-tuning.md", "llama-adapter.md"];
    for name in methods {
        let text = std::fs::read_to_string(docs().join(name)).unwrap_or_else(|e| panic!("docs/{name}: {e}"));
        assert!(text.contains("https://arxiv.org/abs/"), "docs/{name} must cite its paper");
        assert!(text.contains("**Status: "), "docs/{name} must say whether the method is implemented");
    }
}
