//! What an [`super::AutoModel`] reads and returns, for every family at once: the task types of
//! `peft-core`, under the names this module has always used.

/// The inputs of any architecture; each family reads the ones it needs.
pub type AutoInputs = peft_core::ModelInputs;

/// A head's output, whatever its rank.
pub type AutoOutput = peft_core::Logits;
