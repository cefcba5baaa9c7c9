//! Repository rules, checked with every `cargo test`.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_test_is_ignored() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    let marker = ["#[", "ignore"].concat();
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|s| s.contains(&marker)))
        .map(|f| f.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "tests must run in CI; remove the ignore marker from {offenders:?}");
}

#[test]
fn every_crate_has_a_readme() {
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/").flatten() {
        assert!(entry.path().join("README.md").is_file(), "{} needs a README.md", entry.path().display());
    }
}

#[test]
fn fixtures_stay_small() {
    fn size(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|es| es.flatten().map(|e| if e.path().is_dir() { size(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) }).sum())
            .unwrap_or(0)
    }
    let bytes = size(&root().join("fixtures"));
    assert!(bytes < 8 * 1024 * 1024, "fixtures/ holds {bytes} bytes; keep committed fixtures under 8 MiB");
}

#[test]
fn library_code_does_not_unwrap() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    let mut offenders = Vec::new();
    for f in files.iter().filter(|f| f.components().any(|c| c.as_os_str() == "src")) {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        // Unit tests at the end of a file may unwrap.
        let library = text.split("#[cfg(test)]").next().unwrap_or("");
        let count = library.matches(".unwrap()").count() + library.matches(".expect(").count();
        if count > 3 {
            offenders.push(format!("{} ({count})", f.display()));
        }
    }
    assert!(offenders.is_empty(), "library code must return typed errors, not panic: {offenders:?}");
}

/// Each test binary links all of Burn: one per crate (more tests go in as modules of
/// `tests/integration/`), or CI spends its time and disk linking.
#[test]
fn one_integration_test_binary_per_crate() {
    let mut packages: Vec<PathBuf> = std::fs::read_dir(root().join("crates")).expect("crates/").flatten().map(|e| e.path()).collect();
    packages.extend(["examples", "bench", "xtask"].map(|p| root().join(p)));
    for package in packages {
        let Ok(entries) = std::fs::read_dir(package.join("tests")) else { continue };
        let binaries: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "rs") || e.path().join("main.rs").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(binaries.len() <= 1, "{} has test binaries {binaries:?}: make them modules of one `tests/integration/main.rs`", package.display());
    }
}
