//! `adapter_config.json`: any text parses to a config or a typed error, and a config that
//! parses is written back to JSON that reads as the same config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peft_core::PeftConfig;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = PeftConfig::from_json_str(text, Path::new("adapter_config.json")) {
        let again = PeftConfig::from_json_str(&config.to_json_string(), Path::new("written.json"));
        assert_eq!(again.ok().as_ref(), Some(&config), "a config must read back as written");
    }
});
