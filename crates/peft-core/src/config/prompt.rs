//! The prompt-learning configs: prompt tuning, P-tuning (`PromptEncoderConfig`) and prefix tuning,
//! around the fields the Python library's `PromptLearningConfig` gives all three.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::common::CommonConfig;
use super::extra::ExtraKeys;
use crate::{Error, Result};

/// The fields every prompt-learning method has (the Python library's `PromptLearningConfig`).
///
/// Held flattened by [`PromptTuningConfig`], [`PromptEncoderConfig`] and [`PrefixTuningConfig`].
/// The sizes other than `num_virtual_tokens` describe the base model; `None` until they are
/// filled from it when the adapter is attached, as `get_peft_model` fills them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptLearningFields {
    /// How many virtual tokens are learned (`> 0`; `0` is "not set", as Python's `None`).
    #[serde(deserialize_with = "zero_if_null")]
    pub num_virtual_tokens: usize,
    /// The base model's embedding width.
    pub token_dim: Option<usize>,
    /// Transformer stacks the prompt feeds: 1, or 2 for an encoder-decoder.
    pub num_transformer_submodules: Option<usize>,
    /// The base model's attention heads.
    pub num_attention_heads: Option<usize>,
    /// The base model's layers.
    pub num_layers: Option<usize>,
}

// Python's default is `None`; a file can hold `null` there, which reads as "not set".
fn zero_if_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    Ok(Option::<usize>::deserialize(d)?.unwrap_or(0))
}

impl PromptLearningFields {
    /// Checks the sizes; each error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.num_virtual_tokens == 0 {
            return Err(Error::config("num_virtual_tokens", 0, "learn at least one virtual token (20 is usual)"));
        }
        let sizes = [("token_dim", self.token_dim), ("num_attention_heads", self.num_attention_heads), ("num_layers", self.num_layers)];
        for (field, value) in sizes {
            if value == Some(0) {
                return Err(Error::config(field, 0, "leave it null to take it from the base model, or give the model's size"));
            }
        }
        if let Some(n) = self.num_transformer_submodules.filter(|n| !(1..=2).contains(n)) {
            return Err(Error::config("num_transformer_submodules", n, "use 1, or 2 for an encoder-decoder model (or null)"));
        }
        Ok(())
    }
}

/// Keys the Python library writes for every prompt-learning method that this crate ignores.
pub(crate) const PYTHON_PROMPT_KEYS: &[&str] = &["auto_mapping", "peft_version"];

/// How prompt tuning's virtual tokens start (`prompt_tuning_init`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromptTuningInit {
    /// Random continuous vectors (`"RANDOM"`).
    #[default]
    #[serde(rename = "RANDOM")]
    Random,
    /// The embeddings of `prompt_tuning_init_text`'s tokens (`"TEXT"`).
    #[serde(rename = "TEXT")]
    Text,
    /// Embeddings of tokens sampled from the vocabulary (`"SAMPLE_VOCAB"`).
    #[serde(rename = "SAMPLE_VOCAB")]
    SampleVocab,
}

/// The configuration of prompt tuning, as the Python library's `PromptTuningConfig`: learned
/// virtual-token embeddings prepended to the input.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptTuningConfig {
    /// The fields of every prompt-learning method.
    #[serde(flatten)]
    pub prompt_learning: PromptLearningFields,
    /// How the virtual tokens start.
    pub prompt_tuning_init: PromptTuningInit,
    /// The text whose tokens start the prompt (with [`PromptTuningInit::Text`]).
    pub prompt_tuning_init_text: Option<String>,
    /// The tokenizer for `prompt_tuning_init_text` (with [`PromptTuningInit::Text`]).
    pub tokenizer_name_or_path: Option<String>,
    /// Options for loading that tokenizer (with [`PromptTuningInit::Text`]).
    pub tokenizer_kwargs: Option<IndexMap<String, Value>>,
    /// The fields every method shares (`task_type`, `modules_to_save`, ...).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Keys of `adapter_config.json` this crate does not interpret, kept for writing back.
    /// (Last: serde offers each flattened field the keys the ones before it left.)
    #[serde(flatten)]
    pub extra: ExtraKeys,
}

crate::impl_method_config!(PromptTuningConfig, PromptTuning, PYTHON_PROMPT_KEYS);

impl PromptTuningConfig {
    /// `num_virtual_tokens` random virtual tokens.
    pub fn new(num_virtual_tokens: usize) -> Self {
        PromptTuningConfig { prompt_learning: PromptLearningFields { num_virtual_tokens, ..Default::default() }, ..Default::default() }
    }

    /// Starts the prompt from the tokens of `text`, tokenized by `tokenizer_name_or_path`.
    pub fn with_init_text(mut self, text: impl Into<String>, tokenizer_name_or_path: impl Into<String>) -> Self {
        self.prompt_tuning_init = PromptTuningInit::Text;
        self.prompt_tuning_init_text = Some(text.into());
        self.tokenizer_name_or_path = Some(tokenizer_name_or_path.into());
        self
    }
    /// Sets `prompt_tuning_init`.
    pub fn with_prompt_tuning_init(mut self, init: PromptTuningInit) -> Self {
        self.prompt_tuning_init = init;
        self
    }
    /// Adds a `tokenizer_kwargs` entry.
    pub fn with_tokenizer_kwarg(mut self, key: impl Into<String>, value: Value) -> Self {
        self.tokenizer_kwargs.get_or_insert_with(IndexMap::new).insert(key.into(), value);
        self
    }

    /// Checks every field a user can get wrong, as the Python library does; each error names the
    /// field and the fix.
    pub fn validate(&self) -> Result<()> {
        self.prompt_learning.validate()?;
        let text_init = self.prompt_tuning_init == PromptTuningInit::Text;
        if text_init && self.tokenizer_name_or_path.as_deref().is_none_or(str::is_empty) {
            return Err(Error::config("tokenizer_name_or_path", "null", "prompt_tuning_init \"TEXT\" needs the tokenizer that splits the text"));
        }
        if text_init && self.prompt_tuning_init_text.is_none() {
            return Err(Error::config("prompt_tuning_init_text", "null", "prompt_tuning_init \"TEXT\" needs the text to start from"));
        }
        if !text_init && self.tokenizer_kwargs.as_ref().is_some_and(|k| !k.is_empty()) {
            return Err(Error::config("tokenizer_kwargs", format!("{:?}", self.tokenizer_kwargs), "only used with prompt_tuning_init \"TEXT\"; remove it"));
        }
        Ok(())
    }
}

/// The network that turns P-tuning's virtual tokens into prompts (`encoder_reparameterization_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromptEncoderReparameterizationType {
    /// A two-layer MLP (`"MLP"`).
    #[default]
    #[serde(rename = "MLP")]
    Mlp,
    /// A bidirectional LSTM followed by an MLP (`"LSTM"`).
    #[serde(rename = "LSTM")]
    Lstm,
}

/// The configuration of P-tuning, as the Python library's `PromptEncoderConfig`: virtual tokens
/// passed through a small encoder before being prepended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptEncoderConfig {
    /// The fields of every prompt-learning method.
    #[serde(flatten)]
    pub prompt_learning: PromptLearningFields,
    /// The encoder network.
    pub encoder_reparameterization_type: PromptEncoderReparameterizationType,
    /// The encoder's hidden width (`None`: `token_dim`, filled when attaching).
    pub encoder_hidden_size: Option<usize>,
    /// The LSTM's layers (the MLP always has two; Python warns that this is ignored then).
    pub encoder_num_layers: usize,
    /// Dropout probability inside the encoder, in `[0, 1)`.
    pub encoder_dropout: f64,
    /// The fields every method shares (`task_type`, `modules_to_save`, ...).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Keys of `adapter_config.json` this crate does not interpret, kept for writing back.
    #[serde(flatten)]
    pub extra: ExtraKeys,
}

crate::impl_method_config!(PromptEncoderConfig, PTuning, PYTHON_PROMPT_KEYS);

impl Default for PromptEncoderConfig {
    fn default() -> Self {
        PromptEncoderConfig {
            prompt_learning: PromptLearningFields::default(),
            encoder_reparameterization_type: PromptEncoderReparameterizationType::Mlp,
            encoder_hidden_size: None,
            encoder_num_layers: 2,
            encoder_dropout: 0.0,
            common: CommonConfig::default(),
            extra: ExtraKeys::default(),
        }
    }
}

impl PromptEncoderConfig {
    /// `num_virtual_tokens` virtual tokens through the default MLP encoder.
    pub fn new(num_virtual_tokens: usize) -> Self {
        PromptEncoderConfig { prompt_learning: PromptLearningFields { num_virtual_tokens, ..Default::default() }, ..Default::default() }
    }

    /// Sets `encoder_reparameterization_type`.
    pub fn with_encoder_reparameterization_type(mut self, kind: PromptEncoderReparameterizationType) -> Self {
        self.encoder_reparameterization_type = kind;
        self
    }
    /// Sets `encoder_hidden_size`.
    pub fn with_encoder_hidden_size(mut self, size: usize) -> Self {
        self.encoder_hidden_size = Some(size);
        self
    }
    /// Sets `encoder_num_layers` (used by the LSTM encoder).
    pub fn with_encoder_num_layers(mut self, layers: usize) -> Self {
        self.encoder_num_layers = layers;
        self
    }
    /// Sets `encoder_dropout`.
    pub fn with_encoder_dropout(mut self, p: f64) -> Self {
        self.encoder_dropout = p;
        self
    }

    /// Checks every field a user can get wrong; each error names the field and the fix.
    pub fn validate(&self) -> Result<()> {
        self.prompt_learning.validate()?;
        if self.encoder_hidden_size == Some(0) {
            return Err(Error::config("encoder_hidden_size", 0, "use a positive width, or null for token_dim"));
        }
        if self.encoder_reparameterization_type == PromptEncoderReparameterizationType::Lstm && self.encoder_num_layers == 0 {
            return Err(Error::config("encoder_num_layers", 0, "the LSTM encoder needs at least one layer (2 is the default)"));
        }
        if !(0.0..1.0).contains(&self.encoder_dropout) {
            return Err(Error::config("encoder_dropout", self.encoder_dropout, "use a probability in [0, 1), such as 0.1"));
        }
        Ok(())
    }
}

/// How prefix tuning's prefixes start (`init_weights`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PrefixTuningInit {
    /// The prefix activations start at zero, so the adapter starts as a no-op (`"zero"`).
    #[serde(rename = "zero")]
    Zero,
}

/// The configuration of prefix tuning, as the Python library's `PrefixTuningConfig`: learned
/// key/value prefixes in every attention layer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrefixTuningConfig {
    /// The fields of every prompt-learning method.
    #[serde(flatten)]
    pub prompt_learning: PromptLearningFields,
    /// How the prefixes start (`None`: random).
    pub init_weights: Option<PrefixTuningInit>,
    /// The hidden width of the projection MLP (`None`: `token_dim`, filled when attaching).
    pub encoder_hidden_size: Option<usize>,
    /// Whether the prefixes are produced by an MLP from smaller embeddings while training.
    pub prefix_projection: bool,
    /// The fields every method shares (`task_type`, `modules_to_save`, ...).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Keys of `adapter_config.json` this crate does not interpret, kept for writing back.
    #[serde(flatten)]
    pub extra: ExtraKeys,
}

crate::impl_method_config!(PrefixTuningConfig, PrefixTuning, PYTHON_PROMPT_KEYS);

impl PrefixTuningConfig {
    /// Prefixes of `num_virtual_tokens` positions, learned directly (no projection).
    pub fn new(num_virtual_tokens: usize) -> Self {
        PrefixTuningConfig { prompt_learning: PromptLearningFields { num_virtual_tokens, ..Default::default() }, ..Default::default() }
    }

    /// Sets `init_weights`.
    pub fn with_init_weights(mut self, init: Option<PrefixTuningInit>) -> Self {
        self.init_weights = init;
        self
    }
    /// Sets `encoder_hidden_size`.
    pub fn with_encoder_hidden_size(mut self, size: usize) -> Self {
        self.encoder_hidden_size = Some(size);
        self
    }
    /// Sets `prefix_projection`.
    pub fn with_prefix_projection(mut self, yes: bool) -> Self {
        self.prefix_projection = yes;
        self
    }

    /// Checks every field a user can get wrong; each error names the field and the fix.
    pub fn validate(&self) -> Result<()> {
        self.prompt_learning.validate()?;
        if self.encoder_hidden_size == Some(0) {
            return Err(Error::config("encoder_hidden_size", 0, "use a positive width, or null for token_dim"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_defaults_and_spellings() {
        let c: PromptEncoderConfig = serde_json::from_str(r#"{"num_virtual_tokens": 4}"#).expect("parses");
        assert_eq!(c.encoder_reparameterization_type, PromptEncoderReparameterizationType::Mlp);
        assert_eq!((c.encoder_num_layers, c.encoder_dropout, c.encoder_hidden_size), (2, 0.0, None));
        let t: PromptTuningConfig = serde_json::from_str(r#"{"num_virtual_tokens": null, "prompt_tuning_init": "SAMPLE_VOCAB"}"#).expect("parses");
        assert_eq!(t.prompt_learning.num_virtual_tokens, 0);
        assert_eq!(t.prompt_tuning_init, PromptTuningInit::SampleVocab);
        let p: PrefixTuningConfig = serde_json::from_str(r#"{"num_virtual_tokens": 3, "init_weights": "zero"}"#).expect("parses");
        assert_eq!(p.init_weights, Some(PrefixTuningInit::Zero));
        assert!(!p.prefix_projection);
        let bad = serde_json::from_str::<PrefixTuningConfig>(r#"{"init_weights": "ones"}"#).expect_err("not a Python value");
        assert!(bad.to_string().contains("zero"), "{bad}");
        let bad = serde_json::from_str::<PromptEncoderConfig>(r#"{"encoder_reparameterization_type": "GRU"}"#).expect_err("unknown");
        assert!(bad.to_string().contains("LSTM"), "{bad}");
    }

    #[test]
    fn text_init_needs_text_and_tokenizer() {
        PromptTuningConfig::new(8).with_init_text("Classify:", "gpt2").validate().expect("complete");
        let no_tokenizer = PromptTuningConfig::new(8).with_prompt_tuning_init(PromptTuningInit::Text);
        let e = no_tokenizer.validate().expect_err("no tokenizer");
        assert!(matches!(e, Error::InvalidConfig { field: "tokenizer_name_or_path", .. }), "{e:?}");
        let mut no_text = PromptTuningConfig::new(8).with_init_text("x", "gpt2");
        no_text.prompt_tuning_init_text = None;
        let e = no_text.validate().expect_err("no text");
        assert!(matches!(e, Error::InvalidConfig { field: "prompt_tuning_init_text", .. }), "{e:?}");
        let kwargs = PromptTuningConfig::new(8).with_tokenizer_kwarg("use_fast", Value::Bool(false));
        let e = kwargs.validate().expect_err("kwargs without TEXT");
        assert!(matches!(e, Error::InvalidConfig { field: "tokenizer_kwargs", .. }), "{e:?}");
    }

    #[test]
    fn bad_sizes_name_the_field() {
        let e = PromptTuningConfig::default().validate().expect_err("no tokens");
        assert!(e.to_string().contains("`num_virtual_tokens`"), "{e}");
        let mut c = PrefixTuningConfig::new(4);
        c.prompt_learning.num_transformer_submodules = Some(3);
        let e = c.validate().expect_err("3 stacks");
        assert!(e.to_string().contains("`num_transformer_submodules`"), "{e}");
        c.prompt_learning.num_transformer_submodules = Some(2);
        c.prompt_learning.token_dim = Some(0);
        assert!(c.validate().expect_err("zero width").to_string().contains("`token_dim`"));
        let e = PrefixTuningConfig::new(4).with_encoder_hidden_size(0).validate().expect_err("zero hidden");
        assert!(e.to_string().contains("`encoder_hidden_size`"), "{e}");
        let e = PromptEncoderConfig::new(4).with_encoder_dropout(1.0).validate().expect_err("dropout 1");
        assert!(e.to_string().contains("`encoder_dropout`"), "{e}");
        let lstm = PromptEncoderConfig::new(4).with_encoder_reparameterization_type(PromptEncoderReparameterizationType::Lstm);
        let e = lstm.clone().with_encoder_num_layers(0).validate().expect_err("no LSTM layers");
        assert!(e.to_string().contains("`encoder_num_layers`"), "{e}");
        // The MLP ignores the layer count, as in Python.
        PromptEncoderConfig::new(4).with_encoder_num_layers(0).validate().expect("MLP ignores it");
    }
}
