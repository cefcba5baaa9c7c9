#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod adapter;
pub mod card;
pub mod export;
pub mod gguf;
pub mod tensors;
pub mod weights;

pub use peft_core::{Error, Result};
