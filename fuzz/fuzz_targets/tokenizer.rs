//! `tokenizer.json`: any text loads as a tokenizer or a typed error, and a loaded tokenizer
//! encodes and decodes a sentence without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peft_models::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(tokenizer) = Tokenizer::from_json(text, "tokenizer.json") {
        let _ = tokenizer.encode("Hello, world! 123", true).map(|ids| tokenizer.decode(&ids, false));
    }
});
