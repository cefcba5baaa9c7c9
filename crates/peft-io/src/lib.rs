#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod adapter;
pub mod card;
pub mod export;
pub mod folder;
pub mod gguf;
pub mod hub;
pub mod stored;
pub mod tensors;
pub mod weights;

pub use peft_core::{Error, Result};

#[cfg(test)]
mod hostile_tests;
