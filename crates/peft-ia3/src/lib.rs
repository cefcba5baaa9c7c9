#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod combine;
mod conv;
mod inject;
mod linear;

pub use combine::{Source, add_weighted_adapter};
pub use conv::Ia3Conv2d;
pub use inject::{IA3_KEY, Ia3Method, Injection, inject};
pub use linear::Ia3Linear;
pub use peft_core::Ia3Config;
