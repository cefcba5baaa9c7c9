#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod adaption;
mod build;
mod p_tuning;
mod prefix;
mod prompt_tuning;

pub use adaption::{ADAPTION_GATE, ADAPTION_PROMPT, AdaptionPrompt, AdaptionPromptMethod, default_target};
pub use build::{build, complete_config};
pub use p_tuning::{PromptEncoder, PromptMlp};
pub use prefix::{PrefixEncoder, PrefixLayout, PrefixProjection};
pub use prompt_tuning::PromptEmbedding;

/// The key every prompt-learning method's table has in `adapter_model.safetensors`.
pub const PROMPT_EMBEDDINGS: &str = "prompt_embeddings";
