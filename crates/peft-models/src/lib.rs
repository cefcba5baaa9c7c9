#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod auto;
pub mod bert;
pub mod bloom;
pub mod cache;
pub mod causal;
mod checkpoint;
mod config_file;
pub mod generation;
pub mod gpt2;
pub mod layers;
pub mod llama;
pub mod segformer;
pub mod t5;
pub mod tokenizer;
pub mod vit;
pub mod whisper;

#[cfg(test)]
mod hostile_tests;
