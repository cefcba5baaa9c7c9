#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod bert;
pub mod cache;
pub mod generation;
pub mod layers;
pub mod llama;
pub mod t5;
pub mod tokenizer;
