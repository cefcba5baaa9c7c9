#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod adalora;
mod combine;
mod conv;
mod decompose;
pub mod dora;
mod embedding;
mod init;
mod inject;
mod linear;

pub use combine::{Combination, Source, add_weighted_adapter};
pub use conv::{LoraConv1d, LoraConv2d};
pub use decompose::decompose_bases;
pub use embedding::LoraEmbedding;
pub use inject::{AdapterTensors, Injection, LoraMethod, inject};
pub use linear::LoraLinear;
pub use adalora::{AdaLoraConv2d, AdaLoraLinear, AdaLoraMethod};
pub use peft_core::{AdaLoraConfig, LoraConfig, TaskType};
