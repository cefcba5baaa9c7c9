//! DoRA: weight-decomposed LoRA (Liu et al. 2024, arXiv 2402.09353).
//!
//! The adapted weight is split into a trained magnitude `m` (one per output feature) and a
//! direction `W0 + s A B`, normalised per output feature:
//!
//! `W' = m * (W0 + s A B) / ||W0 + s A B||`
//!
//! The norm is treated as a constant (detached), as the paper's section 4.3 and the Python library
//! do. On activations, with `f = m / ||W0 + s A B||` and `h0 = x W0` the base output without bias:
//!
//! `h = h0 + b + (f - 1) h0 + f s (x A) B`
//!
//! so the forward never forms `W0 + s A B`: the norms come from `W0`, `A` and `B` in
//! `O(d_in d_out r)` (see [`column_norms`]).

mod conv;
mod embedding;
mod linear;
mod norm;

pub use conv::{DoraConv1d, DoraConv2d};
pub use embedding::DoraEmbedding;
pub use linear::DoraLinear;
pub use norm::column_norms;
pub(crate) use norm::MergedNorm;

/// The Python library's key of the magnitude vector, after the module path.
pub const MAGNITUDE_KEY: &str = "lora_magnitude_vector";
