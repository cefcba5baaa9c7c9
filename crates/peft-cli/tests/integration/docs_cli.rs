//! Runs every ```` ```sh ```` block of `docs/cli.md` and `docs/from-python.md` from the
//! workspace root, so the pages' commands keep working as written.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The lines of every ```` ```sh ```` block.
fn sh_lines(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in markdown.lines() {
        match line.trim() {
            "```sh" => inside = true,
            "```" => inside = false,
            l if inside && !l.is_empty() => out.push(l.to_string()),
            _ => {}
        }
    }
    out
}

/// Splits a command line on spaces, keeping double-quoted words whole.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[test]
fn every_command_of_the_cli_page_runs() {
    let page = std::fs::read_to_string(root().join("docs/cli.md")).expect("docs/cli.md");
    let lines = sh_lines(&page);
    assert!(lines.len() >= 5, "the page lost its examples");
    let _ = std::fs::remove_dir_all(root().join("target/docs-cli"));
    run_lines(lines);
}

#[test]
fn every_command_of_the_from_python_page_runs() {
    let page = std::fs::read_to_string(root().join("docs/from-python.md")).expect("docs/from-python.md");
    let lines = sh_lines(&page);
    assert!(lines.len() >= 3, "the page lost its examples");
    let _ = std::fs::remove_dir_all(root().join("target/docs-from-python"));
    run_lines(lines);
}

/// Runs each line as a `peft` command from the workspace root; each must succeed and print.
fn run_lines(lines: Vec<String>) {
    for line in lines {
        let words = words(&line);
        assert_eq!(words.first().map(String::as_str), Some("peft"), "only `peft` commands run here: {line}");
        let out = Command::new(env!("CARGO_BIN_EXE_peft")).args(&words[1..]).current_dir(root()).output().expect("runs");
        assert!(out.status.success(), "`{line}` failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stdout.is_empty(), "`{line}` printed nothing");
    }
}

#[test]
fn quoted_words_stay_whole() {
    assert_eq!(words(r#"peft logits --input-ids "5,6,7;8,9""#), ["peft", "logits", "--input-ids", "5,6,7;8,9"]);
}
