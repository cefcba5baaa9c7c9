#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod attach;
pub mod child;
pub mod loading;
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

/// The backend the benches run on: `PEFT_DEVICE` when set, else the first compiled in (`flex`).
pub fn backend() -> anyhow::Result<peft::device::Backend> {
    Ok(peft::device::Backend::selected()?)
}

/// The default device of [`backend`].
pub fn device() -> anyhow::Result<burn::tensor::Device> {
    Ok(backend()?.device()?)
}
