//! The fields every method's config shares, and the trait each method config implements.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::extra::ExtraKeys;
use crate::{PeftType, Result, TaskType};

/// The fields of `adapter_config.json` that every method has (the Python library's `PeftConfig`
/// base class, plus `modules_to_save`).
///
/// Each method config holds one of these flattened into its own JSON object, so the file keeps
/// the Python library's flat layout (`"task_type": "CAUSAL_LM", "r": 8, ...`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommonConfig {
    /// The task, which picks the head and the default `modules_to_save`.
    pub task_type: Option<TaskType>,
    /// The base model the adapter was trained on (a Hub id or a folder).
    pub base_model_name_or_path: Option<String>,
    /// The base model's revision.
    pub revision: Option<String>,
    /// Whether the adapter is loaded for inference only (frozen).
    pub inference_mode: bool,
    /// Modules trained in full and saved with the adapter (a classifier head).
    pub modules_to_save: Option<Vec<String>>,
}

/// A method's config: the part only that method has, around a [`CommonConfig`].
///
/// Implemented by [`impl_method_config!`](crate::impl_method_config) for each config type; the
/// macro also gives the type the shared builder methods (`with_task_type`, ...).
pub trait MethodConfig: Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The `peft_type` written in `adapter_config.json`.
    const PEFT_TYPE: PeftType;
    /// Keys the Python library writes for this method that this crate accepts while they hold
    /// their default (off) value; other unknown keys are kept and reported once.
    const PYTHON_KEYS: &'static [&'static str];

    /// The shared fields.
    fn common(&self) -> &CommonConfig;
    /// The shared fields, mutably.
    fn common_mut(&mut self) -> &mut CommonConfig;
    /// Keys of the file this crate does not interpret, kept for writing back.
    fn extra(&self) -> &ExtraKeys;
    /// Checks every field a user can get wrong; each error names the field and the fix.
    fn validate(&self) -> Result<()>;
}

/// Implements [`MethodConfig`] for a config type with fields `common: CommonConfig` and
/// `extra: ExtraKeys`, adds the shared builder methods, and the conversion into
/// [`PeftConfig`](crate::PeftConfig).
///
/// `validate` must be an inherent method of the type (`fn validate(&self) -> Result<()>`).
#[macro_export]
#[doc(hidden)]
macro_rules! impl_method_config {
    ($ty:ident, $variant:ident, $keys:expr) => {
        impl $crate::MethodConfig for $ty {
            const PEFT_TYPE: $crate::PeftType = $crate::PeftType::$variant;
            const PYTHON_KEYS: &'static [&'static str] = $keys;
            fn common(&self) -> &$crate::CommonConfig {
                &self.common
            }
            fn common_mut(&mut self) -> &mut $crate::CommonConfig {
                &mut self.common
            }
            fn extra(&self) -> &$crate::ExtraKeys {
                &self.extra
            }
            fn validate(&self) -> $crate::Result<()> {
                $ty::validate(self)
            }
        }

        impl From<$ty> for $crate::PeftConfig {
            fn from(c: $ty) -> Self {
                $crate::PeftConfig::$variant(c)
            }
        }

        impl $ty {
            /// Sets `task_type`.
            pub fn with_task_type(mut self, task: $crate::TaskType) -> Self {
                self.common.task_type = Some(task);
                self
            }
            /// Sets `inference_mode`.
            pub fn with_inference_mode(mut self, yes: bool) -> Self {
                self.common.inference_mode = yes;
                self
            }
            /// Sets `base_model_name_or_path`.
            pub fn with_base_model_name_or_path(mut self, path: impl Into<String>) -> Self {
                self.common.base_model_name_or_path = Some(path.into());
                self
            }
            /// Sets `revision`.
            pub fn with_revision(mut self, revision: impl Into<String>) -> Self {
                self.common.revision = Some(revision.into());
                self
            }
            /// Sets `modules_to_save`: modules trained in full and saved with the adapter.
            pub fn with_modules_to_save<S: Into<String>>(mut self, modules: impl IntoIterator<Item = S>) -> Self {
                self.common.modules_to_save = Some(modules.into_iter().map(Into::into).collect());
                self
            }
        }
    };
}
