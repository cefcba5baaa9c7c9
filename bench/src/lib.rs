//! # peft-bench
//!
//! The benchmark suite of the workspace: `cargo xtask bench [--quick]` runs this crate's binary
//! (`peft-bench RESULTS_DIR`), then the same workloads in the Python reference, and writes one
//! side-by-side table to `bench/results/TABLE.md`. `cargo bench -p peft-bench` runs the criterion
//! version of the training step on the small (`--quick`) model.
//!
//! What is measured, on the CPU `flex` backend with 2 threads:
//! - a training step on a Llama-shaped model three ways: the frozen base (the floor: activation
//!   gradients through every layer), peft's LoRA on all linear layers, and Burn's own
//!   `Module::apply_lora` on the same weights ([`workload`]);
//! - attaching LoRA to every linear layer of a lazily built 80-layer, 8192-wide Llama ([`attach`]).
#![deny(missing_docs)]

pub mod attach;
pub mod memory;
pub mod stats;
pub mod workload;

/// The Llama the benchmarks run: `peft_models`' transformers-compatible one.
pub use peft::models::llama;

/// Threads every benchmark uses, on both sides of the comparison.
pub const THREADS: usize = 2;

/// Sizes the global rayon pool, which Burn's `flex` backend (and its matmuls) run on, to
/// [`THREADS`]. Call once, before the first tensor operation.
pub fn use_threads() -> anyhow::Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .build_global()
        .map_err(|e| anyhow::anyhow!("cannot size the thread pool: {e}"))
}
