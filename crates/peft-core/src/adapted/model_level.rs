//! Adapters that belong to no layer: prompt tables, prompt encoders, prefix encoders.
//!
//! They live in `PeftModel`'s model-level [`AdapterSet`](super::AdapterSet) (a Burn module, so
//! optimizers, devices, records and autodiff see their parameters like any other) and act on the
//! whole model's inputs before each forward: prepend virtual tokens' embeddings, give every
//! attention layer an already-seen prefix of keys and values, extend the mask and the labels.

use burn::tensor::{Int, Tensor, TensorData};

use crate::{ModelDims, ModelInputs, Result};

/// What a model-level adapter may ask of the model while it prepares a forward.
pub struct PrepareContext<'a> {
    /// The model's own embedding of token ids ([`crate::TaskModel::embed_tokens`]).
    pub embed_tokens: &'a dyn Fn(Tensor<2, Int>) -> Result<Tensor<3>>,
    /// The model's sizes ([`crate::TaskModel::dims`]), when it knows them.
    pub dims: Option<ModelDims>,
}

/// An adapter of the whole model: the hooks a prompt-style method implements.
pub trait ModelAdapter: super::erased::AdapterObject {
    /// Rewrites the inputs of a forward (training and serving alike): virtual tokens in
    /// `inputs_embeds`, a prefix in `past_key_values`, the mask and labels extended to match.
    fn prepare(&self, inputs: ModelInputs, context: &PrepareContext<'_>) -> Result<ModelInputs>;

    /// How many positions the adapter adds in front of the real tokens in the logits a causal LM
    /// returns (prompt tuning's virtual tokens; `PeftModel::forward` keeps them, as the Python
    /// library does).
    fn virtual_positions(&self) -> usize {
        0
    }

    /// The adapter's tensors in the Python library's layout, keyed exactly as in
    /// `adapter_model.safetensors` (`prompt_embeddings`, ...; no module path in front).
    fn export(&self) -> Vec<(String, TensorData)>;
}

super::erased::adapter_object!(ModelAdapter);
