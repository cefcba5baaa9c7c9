//! From a prompt-learning config to its adapter: what `get_peft_model` and `from_pretrained` call.

use burn::tensor::{Device, Tensor, TensorData};
use peft_core::{
    Error, ModelAdapter, ModelDims, PeftConfig, PrefixTuningConfig, PromptEncoderConfig, PromptEncoderReparameterizationType,
    PromptLearningFields, PromptTuningConfig, PromptTuningInit, Result,
};

use crate::prefix::PrefixLayout;
use peft_core::adapted::Erased;
use crate::{PROMPT_EMBEDDINGS, PrefixEncoder, PromptEmbedding, PromptEncoder};

/// Fills the sizes a prompt-learning config leaves unset from the model, as the Python library's
/// `_prepare_prompt_learning_config` does before saving the config: `num_layers`, `token_dim`,
/// `num_attention_heads`, `num_transformer_submodules`; for prefix tuning `token_dim` becomes
/// `num_key_value_heads * head_dim` and `num_attention_heads` the key/value heads (grouped-query
/// attention); `encoder_hidden_size` defaults to `token_dim`. Other configs are left as they are.
///
/// # Errors
/// [`Error::Unsupported`] when a size is unset and the model does not give its sizes (`dims`
/// `None`).
pub fn complete_config(config: &mut PeftConfig, dims: Option<ModelDims>) -> Result<()> {
    let (fields, prefix, hidden) = match config {
        PeftConfig::PromptTuning(c) => (&mut c.prompt_learning, false, None),
        PeftConfig::PTuning(c) => (&mut c.prompt_learning, false, Some(&mut c.encoder_hidden_size)),
        PeftConfig::PrefixTuning(c) => (&mut c.prompt_learning, true, Some(&mut c.encoder_hidden_size)),
        _ => return Ok(()),
    };
    let unset = fields.token_dim.is_none() || fields.num_layers.is_none() || fields.num_attention_heads.is_none();
    match dims {
        Some(d) => {
            fields.num_layers.get_or_insert(d.num_layers);
            fields.token_dim.get_or_insert(d.hidden_size);
            fields.num_attention_heads.get_or_insert(d.num_attention_heads);
            fields.num_transformer_submodules.get_or_insert(d.num_transformer_submodules);
            if prefix && d.num_key_value_heads > 0 {
                // The prefix is keys and values: sized by the key/value heads (Python, PEFT #1901).
                fields.token_dim = Some(d.num_key_value_heads * d.head_dim);
                fields.num_attention_heads = Some(d.num_key_value_heads);
            }
        }
        None if unset => {
            return Err(Error::Unsupported {
                what: "prompt-learning methods with a model that does not give its sizes".into(),
                supported: "Llama, GPT-2, BLOOM, BERT, RoBERTa and T5 models; or set token_dim, num_layers and num_attention_heads in the config".into(),
            });
        }
        None => {}
    }
    fields.num_transformer_submodules.get_or_insert(1);
    if let (Some(hidden), Some(dim)) = (hidden, fields.token_dim) {
        hidden.get_or_insert(dim);
    }
    Ok(())
}

/// The model-level adapter of a prompt-learning `config` (already completed by
/// [`complete_config`]), holding `prompt_embeddings` when loading a saved adapter; `None` for
/// configs of other methods.
///
/// # Shapes
/// - `prompt_embeddings`: `[num_virtual_tokens, token_dim]` (prompt tuning, P-tuning) or
///   `[num_virtual_tokens, num_layers * 2 * token_dim]` (prefix tuning)
///
/// # Errors
/// [`Error::ShapeMismatch`] for a table of another shape; [`Error::Unsupported`] for what is not
/// built yet (`prompt_tuning_init` TEXT through a config, SAMPLE_VOCAB);
/// [`Error::InvalidConfig`] for sizes that do not divide.
pub fn build(config: &PeftConfig, prompt_embeddings: Option<TensorData>, device: &Device) -> Result<Option<Erased<dyn ModelAdapter>>> {
    let adapter = match config {
        PeftConfig::PromptTuning(c) => Erased::new(prompt_tuning(c, prompt_embeddings, device)?),
        PeftConfig::PTuning(c) => Erased::new(p_tuning(c, prompt_embeddings, device)?),
        PeftConfig::PrefixTuning(c) => Erased::new(prefix_tuning(c, prompt_embeddings, device)?),
        _ => return Ok(None),
    };
    Ok(Some(adapter))
}

/// `(num_virtual_tokens, token_dim)`, or an error naming the unset size.
fn sizes(fields: &PromptLearningFields) -> Result<(usize, usize)> {
    let dim = fields.token_dim.ok_or_else(|| Error::config("token_dim", "null", "set the model's embedding width, or attach to a model that gives it"))?;
    Ok((fields.num_virtual_tokens * fields.num_transformer_submodules.unwrap_or(1), dim))
}

/// The saved table as a tensor, checked against `shape`.
fn table(data: TensorData, shape: [usize; 2], device: &Device) -> Result<Tensor<2>> {
    if data.shape().as_slice() != shape.as_slice() {
        return Err(Error::ShapeMismatch {
            path: "prompt_encoder".into(),
            tensor: PROMPT_EMBEDDINGS.into(),
            expected: shape.to_vec(),
            actual: data.shape().to_vec(),
        });
    }
    Ok(Tensor::from_data(data.convert::<f32>(), device))
}

fn prompt_tuning(c: &PromptTuningConfig, saved: Option<TensorData>, device: &Device) -> Result<PromptEmbedding> {
    let (tokens, dim) = sizes(&c.prompt_learning)?;
    if let Some(data) = saved {
        return Ok(PromptEmbedding::from_table(table(data, [tokens, dim], device)?));
    }
    match c.prompt_tuning_init {
        PromptTuningInit::Random => Ok(PromptEmbedding::random(tokens, dim, device)),
        init => Err(Error::Unsupported {
            what: format!("prompt_tuning_init {init:?} in peft_prompt::build alone (the tokenizer and vocabulary live with the model)"),
            supported: "RANDOM here; peft::get_peft_model builds TEXT and SAMPLE_VOCAB tables from the model's word embeddings".into(),
        }),
    }
}

fn p_tuning(c: &PromptEncoderConfig, saved: Option<TensorData>, device: &Device) -> Result<PromptEncoder> {
    let (tokens, dim) = sizes(&c.prompt_learning)?;
    if let Some(data) = saved {
        return Ok(PromptEncoder::from_table(table(data, [tokens, dim], device)?));
    }
    let hidden = c.encoder_hidden_size.unwrap_or(dim);
    Ok(match c.encoder_reparameterization_type {
        PromptEncoderReparameterizationType::Mlp => PromptEncoder::mlp(tokens, dim, hidden, device),
        PromptEncoderReparameterizationType::Lstm => PromptEncoder::lstm(tokens, dim, hidden, c.encoder_num_layers, c.encoder_dropout, device),
    })
}

fn prefix_tuning(c: &PrefixTuningConfig, saved: Option<TensorData>, device: &Device) -> Result<PrefixEncoder> {
    let fields = &c.prompt_learning;
    // One prefix for every submodule: the table is not doubled for encoder-decoders.
    let (_, dim) = sizes(fields)?;
    let tokens = fields.num_virtual_tokens;
    let num_layers = fields.num_layers.ok_or_else(|| Error::config("num_layers", "null", "set the model's layer count"))?;
    let num_heads = fields.num_attention_heads.ok_or_else(|| Error::config("num_attention_heads", "null", "set the model's key/value heads"))?;
    if dim % num_heads != 0 {
        return Err(Error::config("token_dim", dim, format!("must be a multiple of num_attention_heads ({num_heads}): key/value heads x head_dim")));
    }
    let layout = PrefixLayout { num_layers, num_heads, head_dim: dim / num_heads };
    if let Some(data) = saved {
        return PrefixEncoder::from_table(table(data, [tokens, layout.width()], device)?, layout);
    }
    let zero = c.init_weights.is_some();
    if c.prefix_projection {
        let hidden = c.encoder_hidden_size.unwrap_or(dim);
        return Ok(PrefixEncoder::with_projection(tokens, dim, hidden, layout, zero, device));
    }
    Ok(PrefixEncoder::new(tokens, layout, zero, device))
}
