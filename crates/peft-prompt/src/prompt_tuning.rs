//! Prompt tuning: learned virtual-token embeddings in front of the input.

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use peft_core::{Error, Labels, ModelAdapter, ModelInputs, PrepareContext, Result};

use crate::PROMPT_EMBEDDINGS;

/// Prompt tuning's table (the Python library's `PromptEmbedding`): one learned vector per virtual
/// token, prepended to the token embeddings of every row.
///
/// # Shapes
/// - `embedding`: `[num_virtual_tokens, token_dim]`
#[derive(Module, Debug)]
pub struct PromptEmbedding {
    /// The virtual tokens' embeddings.
    pub embedding: Param<Tensor<2>>,
}

impl PromptEmbedding {
    /// A table drawn from N(0, 1), as `torch.nn.Embedding` starts (`prompt_tuning_init` RANDOM).
    pub fn random(num_virtual_tokens: usize, token_dim: usize, device: &Device) -> Self {
        let table = Tensor::random([num_virtual_tokens, token_dim], Distribution::Normal(0.0, 1.0), device);
        PromptEmbedding { embedding: Param::from_tensor(table) }
    }

    /// A table holding `table` (a saved `prompt_embeddings`, or any start of your own).
    ///
    /// # Shapes
    /// - `table`: `[num_virtual_tokens, token_dim]`
    pub fn from_table(table: Tensor<2>) -> Self {
        PromptEmbedding { embedding: Param::from_tensor(table) }
    }

    /// The embeddings of the tokens of `prompt_tuning_init_text` (`prompt_tuning_init` TEXT):
    /// `token_ids` (the text as the model's tokenizer splits it) are cut to `num_virtual_tokens`
    /// or repeated until they fill it, as the Python library does, then embedded with `embed`
    /// (the model's own table, [`peft_core::TaskModel::embed_tokens`]).
    ///
    /// # Shapes
    /// - `embed`: `[1, num_virtual_tokens]` ids in, `[1, num_virtual_tokens, token_dim]` out
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `prompt_tuning_init_text` when it has no token or
    /// `num_virtual_tokens` is 0; what `embed` returns.
    pub fn from_text_ids(num_virtual_tokens: usize, token_ids: &[u32], embed: &dyn Fn(Tensor<2, Int>) -> Result<Tensor<3>>, device: &Device) -> Result<Self> {
        if token_ids.is_empty() || num_virtual_tokens == 0 {
            return Err(Error::config("prompt_tuning_init_text", "(no tokens)", "give a text that tokenizes to at least one token, and num_virtual_tokens > 0"));
        }
        let ids: Vec<i64> = token_ids.iter().cycle().take(num_virtual_tokens).map(|t| i64::from(*t)).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, num_virtual_tokens]), device);
        let [_, n, dim] = embed(ids.clone())?.dims();
        let table = embed(ids)?.reshape([n, dim]).detach();
        Ok(Self::from_table(table))
    }

    /// How many virtual tokens the table holds.
    pub fn num_virtual_tokens(&self) -> usize {
        self.embedding.dims()[0]
    }
}

impl ModelAdapter for PromptEmbedding {
    fn prepare(&self, inputs: ModelInputs, context: &PrepareContext<'_>) -> Result<ModelInputs> {
        prepend_prompts(self.embedding.val(), inputs, context)
    }

    fn virtual_positions(&self) -> usize {
        self.num_virtual_tokens()
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        vec![(PROMPT_EMBEDDINGS.into(), self.embedding.val().into_data())]
    }
}

/// Puts `prompts` in front of every row's embeddings, ones in front of the mask and -100 in front
/// of token labels, as `PeftModelForCausalLM.forward` does.
///
/// For an encoder-decoder (`num_transformer_submodules` 2) the table holds twice the virtual
/// tokens and, as `PeftModelForSeq2SeqLM.forward` does, only the first half goes in front of the
/// encoder's input; the labels are the decoder's and stay as they are.
///
/// # Shapes
/// - `prompts`: `[num_virtual_tokens * num_transformer_submodules, hidden]`
pub(crate) fn prepend_prompts(prompts: Tensor<2>, mut inputs: ModelInputs, context: &PrepareContext<'_>) -> Result<ModelInputs> {
    let encoder_decoder = context.dims.is_some_and(|d| d.num_transformer_submodules == 2);
    let prompts = if encoder_decoder {
        let rows = prompts.dims()[0];
        prompts.narrow(0, 0, rows / 2)
    } else {
        prompts
    };
    let embeds = match inputs.inputs_embeds.take() {
        Some(e) => e,
        None => (context.embed_tokens)(inputs.need_ids()?)?,
    };
    let [batch, _, hidden] = embeds.dims();
    let [virtual_tokens, dim] = prompts.dims();
    if dim != hidden {
        return Err(Error::ShapeMismatch {
            path: "prompt_encoder".into(),
            tensor: PROMPT_EMBEDDINGS.into(),
            expected: vec![virtual_tokens, hidden],
            actual: vec![virtual_tokens, dim],
        });
    }
    let device = embeds.device();
    // Prompts learned in f32 join a half-precision model's embeddings in their type.
    let prompts = prompts.unsqueeze_dim::<3>(0).repeat_dim(0, batch).cast(embeds.dtype());
    inputs.inputs_embeds = Some(Tensor::cat(vec![prompts, embeds], 1));
    inputs.attention_mask = inputs.attention_mask.map(|m| Tensor::cat(vec![Tensor::ones([batch, virtual_tokens], &device), m], 1));
    // The virtual tokens take the first segment, as in the Python library.
    inputs.token_type_ids = inputs.token_type_ids.map(|t| Tensor::cat(vec![Tensor::zeros([batch, virtual_tokens], &device), t], 1));
    inputs.labels = match inputs.labels.take() {
        Some(Labels::Tokens(labels)) if !encoder_decoder => {
            let ignored = Tensor::<2, Int>::full([batch, virtual_tokens], -100, &device);
            Some(Labels::Tokens(Tensor::cat(vec![ignored, labels], 1)))
        }
        other => other,
    };
    Ok(inputs)
}
