//! `AttentionHook`: an adapter site on a self-attention module's output (LLaMA-Adapter's gated
//! adaption prompts attend from the layer's own queries and add to its output).

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};

use super::linear::AdaptedLinear;
use super::set::AdapterSet;
use crate::{Error, Result};

/// What an attention adapter sees of the layer it adapts.
///
/// # Shapes
/// - `query`: `[batch, num_heads, len, head_dim]`, rotary embedding applied where the model has one
pub struct AttentionInputs<'a> {
    /// The layer's queries, as its own attention uses them (before any score scaling).
    pub query: &'a Tensor<4>,
    /// The layer's projections a prompt's keys and values come from.
    pub projections: AttentionProjections<'a>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
}

/// How a layer projects to keys and values, and back to its output.
#[derive(Clone, Copy)]
pub enum AttentionProjections<'a> {
    /// Separate key and value projections and an output projection (Llama family).
    Separate {
        /// `hidden -> num_key_value_heads * head_dim`.
        k_proj: &'a AdaptedLinear,
        /// `hidden -> num_key_value_heads * head_dim`.
        v_proj: &'a AdaptedLinear,
        /// `num_heads * head_dim -> hidden`.
        o_proj: &'a AdaptedLinear,
    },
    /// One fused projection `hidden -> [q | k | v]`, each `hidden` wide (GPT-2's `c_attn`); the
    /// layer's output projection already ran on the output an adapter receives.
    Fused {
        /// `hidden -> 3 * hidden`.
        c_attn: &'a AdaptedLinear,
    },
}

/// An adapter on a self-attention module's output: the hook a method implements.
pub trait AttentionAdapter: super::erased::AdapterObject {
    /// The layer's new output given its queries and its output.
    ///
    /// # Shapes
    /// - `output`: `[batch, len, hidden]`, and the same out.
    fn adapt_output(&self, inputs: &AttentionInputs<'_>, output: Tensor<3>) -> Tensor<3>;

    /// The adapter's tensors in the Python library's layout, keyed by suffix
    /// (`adaption_prompt`, `adaption_gate`).
    fn export(&self) -> Vec<(String, TensorData)>;
}

super::erased::adapter_object!(AttentionAdapter);

/// The adapters of one self-attention module; its path is the module's (`model.layers.3.self_attn`).
#[derive(Module, Debug, Default)]
pub struct AttentionHook {
    /// The adapters, by name.
    pub adapters: AdapterSet<dyn AttentionAdapter>,
}

impl AttentionHook {
    /// The layer's output after every active adapter (unchanged when there is none).
    ///
    /// # Shapes
    /// - `output`: `[batch, len, hidden]`, and the same out.
    pub fn apply(&self, inputs: &AttentionInputs<'_>, output: Tensor<3>) -> Tensor<3> {
        if self.adapters.is_empty() || self.adapters.is_disabled() {
            return output;
        }
        self.adapters.forward_adapters().fold(output, |y, a| a.adapt_output(inputs, y))
    }

    /// Whether any adapter could act (so the layer keeps what the hook reads).
    pub fn is_active(&self) -> bool {
        !self.adapters.is_empty() && !self.adapters.is_disabled()
    }

    /// Attention adapters add inputs, not weights: there is nothing to merge.
    pub fn merge_adapter(&mut self, name: &str) -> Result<()> {
        Err(Error::Unsupported {
            what: format!("merging the attention adapter `{name}` (its prompts are attended to, not folded into a weight)"),
            supported: "merging layer methods such as LoRA".into(),
        })
    }

    /// See [`AttentionHook::merge_adapter`].
    pub fn unmerge_adapter(&mut self, name: &str) -> Result<()> {
        self.merge_adapter(name)
    }
}
