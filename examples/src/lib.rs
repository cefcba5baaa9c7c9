//! The LoRA guides of the Python PEFT documentation, in Rust.
//!
//! Each guide is a library function returning a small report, run by a thin binary in this
//! package's `examples/` and, in smoke mode, by the tests in `tests/guides.rs`:
//! [`image_classification`], [`semantic_segmentation`], [`whisper_auto`], [`quicktour`],
//! [`smollm2_tweets`], [`custom_model`] (the guide on models of your own), and [`ia3_seq2seq`]
//! ((IA)³ instead of LoRA); on the real models of the assets, [`adalora_tweets`] (AdaLoRA),
//! [`ia3_minilm`] ((IA)³) and [`dora_smollm2`] (DoRA). [`minilm`] and [`tweets`] are the task and
//! data those share.
#![deny(missing_docs)]

pub mod adalora_tweets;
pub mod common;
pub mod custom_model;
pub mod dora_smollm2;
pub mod ia3_minilm;
pub mod ia3_seq2seq;
pub mod image_classification;
pub mod llama_adapter_smollm2;
pub mod minilm;
pub mod p_tuning_minilm;
pub mod prefix_tuning_seq2seq;
pub mod prompt_tuning_smollm2;
pub mod quicktour;
pub mod semantic_segmentation;
pub mod smollm2_tweets;
pub mod tweets;
pub mod whisper_auto;

/// The workspace README's quickstart, compiled with the doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}
