//! Prompt tuning's `TEXT` and `SAMPLE_VOCAB` initialisations: the starting table taken from the
//! model's word embeddings, as the Python library builds it when it creates the adapter.

use burn::tensor::{Distribution, Int, Tensor, TensorData};
use peft_core::{AdapterSites, Error, PeftConfig, PromptTuningConfig, PromptTuningInit, Result, SiteMut};

/// The starting table of a prompt-tuning `config` whose `prompt_tuning_init` is `TEXT` or
/// `SAMPLE_VOCAB`; `None` for every other config (a random table, or another method).
///
/// - `TEXT`: the ids of `prompt_tuning_init_text` under the tokenizer at `tokenizer_name_or_path`
///   (special tokens included, as the Python library calls the tokenizer), cut or repeated to the
///   table's length.
/// - `SAMPLE_VOCAB`: ids drawn uniformly from the vocabulary (the backend's generator, so
///   `device.seed` makes it repeatable).
///
/// Each row is the word embedding of its id.
///
/// # Shapes
/// - output: `[num_virtual_tokens * num_transformer_submodules, token_dim]`
pub(crate) fn initial_table<M: AdapterSites>(config: &PeftConfig, model: &M) -> Result<Option<TensorData>> {
    let PeftConfig::PromptTuning(tuning) = config else { return Ok(None) };
    if tuning.prompt_tuning_init == PromptTuningInit::Random {
        return Ok(None);
    }
    let fields = &tuning.prompt_learning;
    let total = fields.num_virtual_tokens * fields.num_transformer_submodules.unwrap_or(1);
    let table = word_embeddings(model)?;
    let [vocab, _] = table.dims();
    let device = table.device();
    let index = match tuning.prompt_tuning_init {
        // The backend's generator draws the ids, so `device.seed` makes them repeatable.
        PromptTuningInit::SampleVocab => {
            Tensor::<1, Int>::random([total], Distribution::Uniform(0.0, vocab as f64), &device).clamp(0, vocab as i64 - 1)
        }
        _ => {
            let ids = text_ids(tuning)?;
            if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::config(
                    "tokenizer_name_or_path",
                    tuning.tokenizer_name_or_path.as_deref().unwrap_or_default(),
                    format!("the tokenizer gives id {id} but the model's vocabulary has {vocab} tokens: use the model's own tokenizer"),
                ));
            }
            let ids: Vec<i64> = ids.iter().cycle().take(total).map(|&id| i64::from(id)).collect();
            Tensor::<1, Int>::from_data(TensorData::new(ids, [total]), &device)
        }
    };
    Ok(Some(table.select(0, index).detach().into_data()))
}

/// The input word-embedding table `[vocab, hidden]`: the model's first embedding site of that size.
fn word_embeddings<M: AdapterSites>(model: &M) -> Result<Tensor<2>> {
    let unsupported = || Error::Unsupported {
        what: "prompt_tuning_init TEXT or SAMPLE_VOCAB on a model without a word-embedding site of [vocab_size, hidden_size]".into(),
        supported: "the families of peft-models (their model_dims and embedding sites); prompt_tuning_init RANDOM elsewhere".into(),
    };
    let dims = model.model_dims().ok_or_else(unsupported)?;
    let mut found = None;
    model.visit_sites(&mut |_, site| {
        if let SiteMut::Embedding(embedding) = site
            && found.is_none()
            && embedding.dims() == [dims.vocab_size, dims.hidden_size]
        {
            found = Some(embedding.base_layer.weight.val());
        }
    });
    found.ok_or_else(unsupported)
}

/// The token ids of `prompt_tuning_init_text` under the tokenizer `tokenizer_name_or_path` (a
/// folder holding `tokenizer.json`, the file, or a `.gguf` model and the tokenizer in it).
#[cfg(feature = "models")]
fn text_ids(tuning: &PromptTuningConfig) -> Result<Vec<u32>> {
    use peft_models::tokenizer::Tokenizer;
    let text = tuning.prompt_tuning_init_text.as_deref().filter(|t| !t.is_empty()).ok_or_else(|| {
        Error::config("prompt_tuning_init_text", "null", "give the text whose token embeddings start the prompt, or use prompt_tuning_init RANDOM")
    })?;
    let path = tuning.tokenizer_name_or_path.as_deref().ok_or_else(|| {
        Error::config("tokenizer_name_or_path", "null", "name the folder (or the tokenizer.json) of the model's tokenizer; TEXT init tokenizes prompt_tuning_init_text with it")
    })?;
    let location = std::path::Path::new(path);
    let is_gguf = location.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let tokenizer = if location.is_dir() {
        Tokenizer::from_dir(location)
    } else if is_gguf {
        // A GGUF model carries its tokenizer in its metadata.
        Tokenizer::from_gguf(location)
    } else {
        Tokenizer::from_file(location)
    }
    .map_err(|e| Error::config("tokenizer_name_or_path", path, format!("{e}; give a local folder holding tokenizer.json, the file itself, or a .gguf model")))?;
    let ids = tokenizer.encode(text, true).map_err(|e| Error::config("prompt_tuning_init_text", text, e.to_string()))?;
    if ids.is_empty() {
        return Err(Error::config("prompt_tuning_init_text", text, "the text gives no tokens: use a longer text"));
    }
    Ok(ids)
}

#[cfg(not(feature = "models"))]
fn text_ids(_: &PromptTuningConfig) -> Result<Vec<u32>> {
    Err(Error::Unsupported {
        what: "prompt_tuning_init TEXT in a build without the `models` feature (the tokenizer lives there)".into(),
        supported: "enable the `models` feature of `peft`, or build the table with peft_prompt::PromptEmbedding::from_text_ids".into(),
    })
}
