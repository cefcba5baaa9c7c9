//! Building blocks shared by the architectures, with transformers' parameter names so that
//! checkpoint keys match module paths without a rename table. A family takes these from here
//! rather than from another family's module.
//!
//! - [`LayerNorm`] and [`RmsNorm`]: the two normalisations (`weight`, `bias`).
//! - [`HiddenAct`]: the feed-forward activations configs name.
//! - [`RotaryEmbedding`] and [`RopeScaling`]: rotary position embeddings with the scalings
//!   transformers writes in `config.json` (`default`, `linear`, `llama3`).
//! - [`linear`] and [`embedding`]: fresh adapter sites drawn from `N(0, std)`.
//! - The losses: [`cross_entropy`], [`token_cross_entropy`], [`span_cross_entropy`],
//!   [`causal_lm_loss`], [`seq2seq_lm_loss`], and [`shift_right`] for encoder-decoder labels.
//! - The decoders' attention masks: [`full_key_mask`], [`causal_bias`], [`real_positions`], and
//!   [`attention_probs`], the masked softmax in f32 whatever the model's type.

mod activation;
mod init;
mod layer_norm;
pub(crate) mod legacy;
mod loss;
mod mask;
mod rms_norm;
mod rope;
mod scores;

pub use activation::HiddenAct;
pub use init::{embedding, linear};
pub use layer_norm::LayerNorm;
pub use loss::{IGNORE_INDEX, causal_lm_loss, cross_entropy, seq2seq_lm_loss, shift_right, span_cross_entropy, token_cross_entropy};
pub use mask::{causal_bias, full_key_mask, real_positions};
pub use rms_norm::RmsNorm;
pub use rope::{RopeScaling, RotaryEmbedding};
pub use scores::attention_probs;
