//! GGUF files: the header, every tensor, the Llama config of the metadata and the tokenizer
//! each come out as values or typed errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peft_io::gguf::GgufFile;
use peft_models::{llama::LlamaConfig, tokenizer::Tokenizer};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data, "model.gguf") else { return };
    for info in &file.tensors {
        let tensor = file.read_tensor_from(data, &info.name).expect("open checked every tensor's bytes");
        assert_eq!(tensor.shape().to_vec(), info.shape);
    }
    let _ = LlamaConfig::from_gguf(&file);
    if let Ok(tokenizer) = Tokenizer::from_gguf_file(&file) {
        let _ = tokenizer.encode("Hello, world! 123", true).map(|ids| tokenizer.decode(&ids, false));
    }
});
