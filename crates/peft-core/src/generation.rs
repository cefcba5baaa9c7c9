//! `GenerationConfig`: transformers' `generation_config.json`, with its defaults and checks, and
//! [`Generated`], what generation returns. The algorithms live in `peft-models`; the types live
//! here so `PeftModel::generate` and method crates can name them.

use burn::tensor::{Device, Int, Tensor, TensorData};
use crate::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// How beam search decides it is done (transformers' `early_stopping`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EarlyStopping {
    /// `false`: stop once `num_beams` hypotheses are finished and the best running beam, scored
    /// at its current length, cannot beat the worst of them.
    #[default]
    Heuristic,
    /// `true`: stop as soon as `num_beams` hypotheses are finished.
    Finished,
    /// `"never"`: as `false`, but with a positive `length_penalty` the running beam is scored as
    /// if it reached the maximum length (canonical beam search).
    Never,
}

impl Serialize for EarlyStopping {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            EarlyStopping::Heuristic => s.serialize_bool(false),
            EarlyStopping::Finished => s.serialize_bool(true),
            EarlyStopping::Never => s.serialize_str("never"),
        }
    }
}

impl<'de> Deserialize<'de> for EarlyStopping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(false) | Value::Null => Ok(EarlyStopping::Heuristic),
            Value::Bool(true) => Ok(EarlyStopping::Finished),
            Value::String(s) if s == "never" => Ok(EarlyStopping::Never),
            other => Err(serde::de::Error::custom(format!("early_stopping must be true, false or \"never\", got {other}"))),
        }
    }
}

/// How to continue a prompt: transformers' `GenerationConfig` for greedy decoding, sampling
/// (temperature, top-k, top-p) and beam search, with transformers' defaults for missing keys.
///
/// Read one with [`GenerationConfig::from_pretrained`] (a model folder's
/// `generation_config.json`) or write it in code:
///
/// ```
/// use peft_core::generation::GenerationConfig;
/// let config = GenerationConfig { max_new_tokens: Some(20), num_beams: 4, ..GenerationConfig::default() };
/// config.validate().expect("valid");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawConfig")]
pub struct GenerationConfig {
    /// New tokens per row at most; takes precedence over `max_length`.
    pub max_new_tokens: Option<usize>,
    /// Prompt plus new tokens at most (decoder tokens, start token included, for seq2seq); used
    /// when `max_new_tokens` is `None`. Default 20.
    pub max_length: usize,
    /// Sample the next token instead of taking the most likely one. Default `false`.
    pub do_sample: bool,
    /// Sampling: logits are divided by it. Default 1.
    pub temperature: f64,
    /// Sampling: only the `top_k` most likely tokens stay candidates (0: all). Default 50.
    pub top_k: usize,
    /// Sampling: only the most likely tokens whose probabilities sum to `top_p` stay. Default 1.
    pub top_p: f64,
    /// Scores of tokens already in the row (prompt and new) are divided by it when positive and
    /// multiplied when negative (CTRL's penalty; 1 = off). Default 1.
    pub repetition_penalty: f64,
    /// Beams per row (1: no beam search). Default 1.
    pub num_beams: usize,
    /// Beam search ranks finished hypotheses by `sum of log-probs / new_len^length_penalty`.
    /// Default 1.
    pub length_penalty: f64,
    /// When beam search stops. Default [`EarlyStopping::Heuristic`] (`false`).
    pub early_stopping: EarlyStopping,
    /// Tokens that end a row (`eos_token_id`: one id or a list in the file).
    pub eos_token_id: Vec<u32>,
    /// Fills finished rows; `None`: the first eos id (as transformers), or 0 without one.
    pub pad_token_id: Option<u32>,
    /// Starts generation when a causal prompt is empty.
    pub bos_token_id: Option<u32>,
    /// The first decoder token of a seq2seq model; `None`: the model's own.
    pub decoder_start_token_id: Option<u32>,
    /// Seeds sampling; the same seed and inputs give the same tokens. `None`: from the clock.
    pub seed: Option<u64>,
    /// Keys of the file this crate does not read (kept so [`GenerationConfig::unapplied_fields`]
    /// can name them).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        RawConfig::default().into()
    }
}

/// One id, several ids, or `null`, as transformers writes token ids.
#[derive(Deserialize)]
#[serde(untagged)]
enum Ids {
    One(u32),
    Many(Vec<u32>),
}

/// The file's view: every key optional or `null`, defaults applied in `From`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    max_new_tokens: Option<usize>,
    max_length: Option<usize>,
    do_sample: Option<bool>,
    temperature: Option<f64>,
    top_k: Option<usize>,
    top_p: Option<f64>,
    repetition_penalty: Option<f64>,
    num_beams: Option<usize>,
    length_penalty: Option<f64>,
    early_stopping: Option<EarlyStopping>,
    eos_token_id: Option<Ids>,
    pad_token_id: Option<u32>,
    bos_token_id: Option<u32>,
    decoder_start_token_id: Option<u32>,
    seed: Option<u64>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

impl From<RawConfig> for GenerationConfig {
    fn from(r: RawConfig) -> Self {
        GenerationConfig {
            max_new_tokens: r.max_new_tokens,
            max_length: r.max_length.unwrap_or(20),
            do_sample: r.do_sample.unwrap_or(false),
            temperature: r.temperature.unwrap_or(1.0),
            top_k: r.top_k.unwrap_or(50),
            top_p: r.top_p.unwrap_or(1.0),
            repetition_penalty: r.repetition_penalty.unwrap_or(1.0),
            num_beams: r.num_beams.unwrap_or(1),
            length_penalty: r.length_penalty.unwrap_or(1.0),
            early_stopping: r.early_stopping.unwrap_or_default(),
            eos_token_id: match r.eos_token_id {
                None => Vec::new(),
                Some(Ids::One(id)) => vec![id],
                Some(Ids::Many(ids)) => ids,
            },
            pad_token_id: r.pad_token_id,
            bos_token_id: r.bos_token_id,
            decoder_start_token_id: r.decoder_start_token_id,
            seed: r.seed,
            other: r.other,
        }
    }
}

/// Keys transformers writes that do not change the tokens generated here.
const INERT_KEYS: &[&str] = &[
    "_from_model_config",
    "transformers_version",
    "use_cache",
    "output_attentions",
    "output_hidden_states",
    "output_scores",
    "output_logits",
    "return_dict_in_generate",
];

impl GenerationConfig {
    /// Greedy decoding of up to `max_new_tokens` tokens, transformers' defaults otherwise.
    pub fn greedy(max_new_tokens: usize) -> Self {
        GenerationConfig { max_new_tokens: Some(max_new_tokens), ..Self::default() }
    }

    /// Reads a `generation_config.json` and validates it.
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Json`] naming the file, and [`GenerationConfig::validate`]'s.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
        let config: GenerationConfig =
            serde_json::from_str(&text).map_err(|source| Error::Json { path: path.into(), source })?;
        config.validate()?;
        let unapplied = config.unapplied_fields();
        if !unapplied.is_empty() {
            log::warn!("{}: generation ignores {}", path.display(), unapplied.join(", "));
        }
        Ok(config)
    }

    /// A model folder's `generation_config.json`, or the defaults when the folder has none (as
    /// transformers' `GenerationConfig.from_model_config`, minus the model config's token ids).
    ///
    /// # Errors
    /// As [`GenerationConfig::from_file`] when the file exists.
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join("generation_config.json");
        if path.is_file() { Self::from_file(path) } else { Ok(Self::default()) }
    }

    /// Keys set in the file (not `null`) that generation here does not apply, such as
    /// `no_repeat_ngram_size` or `suppress_tokens`.
    pub fn unapplied_fields(&self) -> Vec<String> {
        let inert = |k: &str| INERT_KEYS.contains(&k);
        self.other.iter().filter(|(k, v)| !v.is_null() && !inert(k)).map(|(k, _)| k.clone()).collect()
    }

    /// Checks every number is usable, naming the field and the fix.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `max_new_tokens` 0, `num_beams` 0, a non-positive or
    /// non-finite `temperature` (when sampling) or `repetition_penalty`, `top_p` outside
    /// `(0, 1]`, a non-finite `length_penalty`.
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens == Some(0) {
            return Err(Error::config("max_new_tokens", 0, "at least 1 (or leave it unset to use max_length)"));
        }
        if self.num_beams == 0 {
            return Err(Error::config("num_beams", 0, "at least 1 (1 = no beam search)"));
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if self.do_sample && !positive(self.temperature) {
            return Err(Error::config("temperature", self.temperature, "a finite number > 0, or do_sample = false for greedy"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::config("top_p", self.top_p, "a number in (0, 1] (1 = off)"));
        }
        if !positive(self.repetition_penalty) {
            return Err(Error::config("repetition_penalty", self.repetition_penalty, "a finite number > 0 (1 = off)"));
        }
        if !self.length_penalty.is_finite() {
            return Err(Error::config("length_penalty", self.length_penalty, "a finite number (1 = plain average)"));
        }
        Ok(())
    }

    /// The token that fills finished rows: `pad_token_id`, else the first eos id, else 0.
    pub fn fill_token_id(&self) -> u32 {
        self.pad_token_id.or(self.eos_token_id.first().copied()).unwrap_or(0)
    }

    /// How many tokens to generate after a prompt of `prompt_len` tokens: `max_new_tokens`, or
    /// `max_length - prompt_len`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `max_length` when the prompt already reaches it.
    pub fn new_tokens_after(&self, prompt_len: usize) -> Result<usize> {
        match self.max_new_tokens {
            Some(n) => Ok(n),
            None if self.max_length > prompt_len => Ok(self.max_length - prompt_len),
            None => Err(Error::config(
                "max_length",
                self.max_length,
                format!("more than the prompt's {prompt_len} tokens, or set max_new_tokens instead"),
            )),
        }
    }
}

/// What generation returns (`peft_models::generation::generate`, `PeftModel::generate`): the new tokens of every row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// Each row's new tokens, without the prompt; a row that stopped at an eos id ends with it.
    pub tokens: Vec<Vec<u32>>,
    /// The id that fills finished rows in [`Generated::padded`] ([`GenerationConfig::fill_token_id`]).
    pub pad_token_id: u32,
}

impl Generated {
    /// The rows padded with `pad_token_id` to the longest, as transformers' `generate` returns
    /// them after the prompt.
    ///
    /// # Shapes
    /// - output: `[batch, longest row]`, row-major
    pub fn padded(&self) -> (Vec<i64>, [usize; 2]) {
        let width = self.tokens.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = Vec::with_capacity(self.tokens.len() * width);
        for row in &self.tokens {
            out.extend(row.iter().map(|t| i64::from(*t)));
            out.extend(std::iter::repeat_n(i64::from(self.pad_token_id), width - row.len()));
        }
        (out, [self.tokens.len(), width])
    }

    /// [`Generated::padded`] as a tensor on `device`.
    ///
    /// # Shapes
    /// - output: `[batch, longest row]`
    pub fn to_tensor(&self, device: &Device) -> Tensor<2, Int> {
        let (values, shape) = self.padded();
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

