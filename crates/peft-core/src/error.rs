//! The error type shared by the peft crates.
//!
//! Every variant names the thing that is wrong and, where there is one, the fix. Library code
//! returns these instead of panicking on anything a user can pass in.

use std::path::PathBuf;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when configuring, attaching, loading or saving adapters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A config field holds a value the method cannot use.
    #[error("invalid `{field}` = {value}: {fix}")]
    InvalidConfig {
        /// The config field, as spelled in `adapter_config.json`.
        field: &'static str,
        /// The offending value, as written.
        value: String,
        /// What to write instead.
        fix: String,
    },

    /// `target_modules` matched none of the model's adapter sites.
    #[error(
        "target_modules {targets} matched no module of the model; closest module names: {}. \
         Fix: use names from that list (suffixes such as `q_proj` match at any depth)",
        closest.join(", ")
    )]
    TargetModulesNotFound {
        /// The `target_modules` value, as written.
        targets: String,
        /// Site names of the model closest to the targets.
        closest: Vec<String>,
    },

    /// `modules_to_save` names a module the model has no site for.
    #[error(
        "modules_to_save entry `{name}` matched no module that can be copied; copyable modules: {}",
        available.join(", ")
    )]
    ModuleToSaveNotFound {
        /// The entry that matched nothing.
        name: String,
        /// Paths of the modules that can be copied.
        available: Vec<String>,
    },

    /// An adapter name was used that the model does not have.
    #[error("no adapter named `{name}`; the model has: [{}]", available.join(", "))]
    UnknownAdapter {
        /// The name asked for.
        name: String,
        /// The adapters the model holds.
        available: Vec<String>,
    },

    /// An adapter name is already taken, or is a reserved name.
    #[error("adapter name `{name}` {reason}; pick another name")]
    InvalidAdapterName {
        /// The name asked for.
        name: String,
        /// Why it cannot be used.
        reason: &'static str,
    },

    /// A tensor's shape does not fit the module it is meant for.
    #[error("shape mismatch for `{tensor}` at module `{path}`: the model needs {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// Module path in the model (`model.layers.0.self_attn.q_proj`).
        path: String,
        /// Which tensor (`lora_A.weight`, a file key, ...).
        tensor: String,
        /// The shape the module requires.
        expected: Vec<usize>,
        /// The shape that was given.
        actual: Vec<usize>,
    },

    /// A tensor the model needs is not in the file.
    #[error("tensor `{key}` is missing from {}; {fix}", file.display())]
    MissingTensor {
        /// The key that was looked up.
        key: String,
        /// The file searched.
        file: PathBuf,
        /// What to do about it.
        fix: String,
    },

    /// A file holds tensors that no module of the model takes.
    #[error("{} holds tensors that match no module of the model: {}; {fix}", file.display(), keys.join(", "))]
    UnexpectedTensors {
        /// The file read.
        file: PathBuf,
        /// Keys that found no module (the first few).
        keys: Vec<String>,
        /// What to do about it.
        fix: String,
    },

    /// A file or folder could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot read", "cannot write").
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A JSON file is malformed or has a field of the wrong type.
    #[error("{} is not valid: {source}", path.display())]
    Json {
        /// The file read.
        path: PathBuf,
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },

    /// A tensor file is malformed or uses a format this crate cannot read.
    #[error("{} cannot be read as {format}: {message}", path.display())]
    Format {
        /// The file read.
        path: PathBuf,
        /// The format expected (`safetensors`, `GGUF`, ...).
        format: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// The adapter folder holds a config for another method than the one asked for.
    #[error("{} holds a {found} adapter, not {expected}; load it with the {found} loader or pick another folder", path.display())]
    WrongMethod {
        /// The method asked for.
        expected: String,
        /// The method the config declares.
        found: String,
        /// The config file.
        path: PathBuf,
    },

    /// Something the Python library supports that this crate does not (yet).
    #[error("{what} is not supported; supported: {supported}")]
    Unsupported {
        /// The feature or value asked for.
        what: String,
        /// What is supported instead.
        supported: String,
    },

    /// A mixed-adapter batch was asked for while adapters are merged into the base weights: the
    /// merged update would reach every row, `"__base__"` rows included. The Python library
    /// refuses this too ("Cannot pass `adapter_names` when there are merged adapters").
    #[error(
        "a mixed-adapter batch cannot run while adapters are merged into the base weights \
         ([{}] at module `{path}`); call unmerge_adapters first",
        merged.join(", ")
    )]
    MergedAdaptersInMixedBatch {
        /// The first module found with merged adapters.
        path: String,
        /// The adapters merged there.
        merged: Vec<String>,
    },

    /// A mixed-adapter batch named another number of adapters than the batch has rows.
    #[error(
        "{names} adapter names were given for a batch of {batch} rows; give one name per row \
         (\"__base__\" for the base model alone)"
    )]
    BatchAdaptersMismatch {
        /// How many per-row adapter names were set.
        names: usize,
        /// The batch size a forward saw.
        batch: usize,
    },

    /// A token id lies outside the model's vocabulary (ids made by another tokenizer, or typed by
    /// hand).
    #[error("token id {id} in `{input}` is outside the vocabulary of this model (ids 0..{vocab_size}); tokenize with the model's own tokenizer")]
    TokenIdOutOfRange {
        /// Which input (`input_ids`, `decoder_input_ids`).
        input: &'static str,
        /// The first offending id.
        id: i64,
        /// The model's vocabulary size.
        vocab_size: usize,
    },

    /// A sequence needs more positions than the model's position table has.
    #[error("`{input}` needs {len} positions but the model has {max_positions}; {fix}")]
    SequenceTooLong {
        /// Which input.
        input: &'static str,
        /// Positions needed (virtual tokens, a prefix and tokens to generate included).
        len: usize,
        /// Positions the model has (`n_positions`, `max_position_embeddings`).
        max_positions: usize,
        /// What to do about it.
        fix: String,
    },

    /// An input has a shape the model cannot take.
    #[error("`{input}` has shape {actual:?} but the model takes {expected}; {fix}")]
    InputShape {
        /// Which input.
        input: &'static str,
        /// The shape the model takes, in words (`[batch, 3, 224, 224]`).
        expected: String,
        /// The shape given.
        actual: Vec<usize>,
        /// What to do about it.
        fix: String,
    },

    /// An adapter's tensors name modules this model does not have: it was trained on another
    /// architecture.
    #[error(
        "this adapter was made for another model: {unmatched} of its {total} tensors name modules this {model} does not have          (such as `{example}`); load it onto its own base model{}",
        base.as_ref().map(|b| format!(" (`{b}`, from base_model_name_or_path)")).unwrap_or_default()
    )]
    AdapterForAnotherModel {
        /// The model the adapter was loaded onto (its `model_type` or type name).
        model: String,
        /// Tensors that matched no module.
        unmatched: usize,
        /// Tensors in the file.
        total: usize,
        /// One of the unmatched keys.
        example: String,
        /// The adapter's `base_model_name_or_path`, when it has one.
        base: Option<String>,
    },

    /// A tensor is stored with a dtype the module cannot take (integers where weights are floats).
    #[error("tensor `{key}` is stored as {found}, but the module takes floating point; save it as F32, F16 or BF16")]
    WrongDtype {
        /// The tensor's key.
        key: String,
        /// The stored dtype.
        found: String,
    },

    /// An operation that needs a state the model is not in (for example unmerging an unmerged adapter).
    #[error("{0}")]
    InvalidState(String),
}

impl Error {
    /// An [`Error::Io`] for a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }

    /// An [`Error::InvalidConfig`].
    pub fn config(field: &'static str, value: impl ToString, fix: impl Into<String>) -> Self {
        Error::InvalidConfig { field, value: value.to_string(), fix: fix.into() }
    }
}
