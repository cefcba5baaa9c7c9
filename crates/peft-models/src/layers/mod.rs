//! Building blocks shared by the architectures, with transformers' parameter names so that
//! checkpoint keys match module paths without a rename table.
//!
//! - [`RmsNorm`]: Llama-style root-mean-square normalisation (`weight`).
//! - [`RotaryEmbedding`] and [`RopeScaling`]: rotary position embeddings with the scalings
//!   transformers writes in `config.json` (`default`, `linear`, `llama3`).
//! - [`causal_lm_loss`]: transformers' causal language-modelling loss.

mod loss;
mod rms_norm;
mod rope;

pub use loss::{IGNORE_INDEX, causal_lm_loss};
pub use rms_norm::RmsNorm;
pub use rope::{RopeScaling, RotaryEmbedding};
