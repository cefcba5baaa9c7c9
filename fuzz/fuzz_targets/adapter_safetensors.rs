//! `adapter_model.safetensors`: any bytes give the tensors or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = peft_io::tensors::parse_safetensors(data, Path::new("adapter_model.safetensors"));
});
