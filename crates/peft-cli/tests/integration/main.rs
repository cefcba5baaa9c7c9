//! The `peft` command's integration tests: every subcommand as a user runs it.
//!
//! One test binary per crate: each file here was its own binary once, and every one of them
//! linked all of Burn, so CI spent its time and disk linking. Each module keeps its own file.

mod cli;
mod commands;
mod common;
mod demo;
mod docs_cli;
mod hub;
mod predict;
mod qlora;
mod train_long_runs;
