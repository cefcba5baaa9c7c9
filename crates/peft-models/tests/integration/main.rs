//! The model families' integration tests: each architecture against transformers' outputs.
//!
//! One test binary per crate: each file here was its own binary once, and every one of them
//! linked all of Burn, so CI spent its time and disk linking. Each module keeps its own file.

mod bert;
mod common;
mod generation;
mod gguf_smollm2;
mod gpt2;
mod llama;
mod minilm_tokenizer;
mod t5;
mod vision;
mod whisper;
