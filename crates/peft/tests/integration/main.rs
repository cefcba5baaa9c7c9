//! The facade's integration tests: Python fixtures, the workflow, errors, docs and tidiness.
//!
//! One test binary per crate: each file here was its own binary once, and every one of them
//! linked all of Burn, so CI spent its time and disk linking. Each module keeps its own file.

mod atomic_save;
mod auto;
mod common;
mod custom_method;
mod derive;
mod docs;
mod errors;
mod half_precision;
mod other_methods;
mod prompt_tuning_init;
mod python_adalora;
mod python_adaption_prompt;
mod python_bert;
mod python_bias_mixed;
mod python_dora;
mod python_gpt2;
mod python_heads;
mod python_ia3;
mod python_llama;
mod python_pissa;
mod python_prompt;
mod python_prompt_families;
mod python_t5;
mod python_toy;
mod python_vision;
mod python_whisper;
mod qlora_burn;
mod qlora_gguf;
mod quicktour_seq2seq;
mod tidy;
mod workflow;
