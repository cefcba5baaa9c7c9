//! `Ia3Config`: the (IA)³ section of `adapter_config.json`, field for field.

use serde::{Deserialize, Serialize};

use super::common::CommonConfig;
use super::extra::ExtraKeys;
use crate::targets::TargetModules;
use crate::{Error, Result};

/// The configuration of an (IA)³ adapter, as the Python library's `IA3Config`.
///
/// (IA)³ learns one scaling vector per adapted layer: the output of an attention projection is
/// multiplied by it, and the input of a feed-forward layer (`feedforward_modules`) is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ia3Config {
    /// The modules to adapt (`null`: the architecture's defaults, filled when attaching).
    pub target_modules: TargetModules,
    /// Modules never to adapt, with the same rules.
    pub exclude_modules: TargetModules,
    /// The targets whose input, not output, is scaled; names must be among `target_modules`.
    pub feedforward_modules: TargetModules,
    /// Whether the base weights are stored `[in, out]` (GPT-2's `Conv1D`).
    pub fan_in_fan_out: bool,
    /// `true`: the vectors start at one, so the adapter starts as the identity.
    pub init_ia3_weights: bool,
    /// The fields every method shares (`task_type`, `modules_to_save`, ...).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Keys of `adapter_config.json` this crate does not interpret, kept for writing back.
    /// (After `common`: serde offers each flattened field the keys the ones before it left.)
    #[serde(flatten)]
    pub extra: ExtraKeys,
}

crate::impl_method_config!(Ia3Config, Ia3, PYTHON_IA3_KEYS);

impl Default for Ia3Config {
    fn default() -> Self {
        Ia3Config {
            target_modules: TargetModules::None,
            exclude_modules: TargetModules::None,
            feedforward_modules: TargetModules::None,
            fan_in_fan_out: false,
            init_ia3_weights: true,
            common: CommonConfig::default(),
            extra: ExtraKeys::default(),
        }
    }
}

/// Keys the Python library writes for (IA)³ that this crate accepts and ignores.
pub(crate) const PYTHON_IA3_KEYS: &[&str] = &["auto_mapping", "peft_version"];

impl Ia3Config {
    /// A config adapting `target_modules`, vectors starting at one. `feedforward_modules` is
    /// left unset, so (as in the Python library) the architecture's defaults fill it when
    /// attaching: set it, `[]` for none, on a model without defaults.
    pub fn new(target_modules: impl Into<TargetModules>) -> Self {
        Ia3Config { target_modules: target_modules.into(), ..Default::default() }
    }

    /// Sets `target_modules`: names, a regular expression or `"all-linear"`.
    pub fn with_target_modules(mut self, targets: impl Into<TargetModules>) -> Self {
        self.target_modules = targets.into();
        self
    }
    /// Sets `exclude_modules`.
    pub fn with_exclude_modules(mut self, modules: impl Into<TargetModules>) -> Self {
        self.exclude_modules = modules.into();
        self
    }
    /// Sets `feedforward_modules`: the targets whose input is scaled.
    pub fn with_feedforward_modules(mut self, modules: impl Into<TargetModules>) -> Self {
        self.feedforward_modules = modules.into();
        self
    }
    /// Sets `fan_in_fan_out`.
    pub fn with_fan_in_fan_out(mut self, yes: bool) -> Self {
        self.fan_in_fan_out = yes;
        self
    }
    /// Sets `init_ia3_weights` (`false` starts the vectors random; for tests).
    pub fn with_init_ia3_weights(mut self, yes: bool) -> Self {
        self.init_ia3_weights = yes;
        self
    }

    /// Checks every field a user can get wrong; each error names the field and the fix.
    pub fn validate(&self) -> Result<()> {
        self.target_modules.validate("target_modules")?;
        self.exclude_modules.validate("exclude_modules")?;
        self.feedforward_modules.validate("feedforward_modules")?;
        // As in Python, the subset check applies only when both are name lists, compared as
        // written (a regular expression or "all-linear" is matched per module instead).
        if let (TargetModules::Names(targets), TargetModules::Names(feedforward)) = (&self.target_modules, &self.feedforward_modules) {
            let stray: Vec<&String> = feedforward.iter().filter(|f| !targets.contains(f)).collect();
            if !stray.is_empty() {
                return Err(Error::config(
                    "feedforward_modules",
                    format!("{feedforward:?}"),
                    format!("every feed-forward module must also be in target_modules {targets:?}; {stray:?} is not"),
                ));
            }
        }
        Ok(())
    }

    /// Whether the module at `path` is a feed-forward target (its input is scaled).
    ///
    /// The Python library's own rule, which differs from `target_modules` matching: a name
    /// matches any path that *ends with* it (`"proj"` matches `mlp.down_proj`), a single string
    /// is a regular expression matched against the whole path.
    pub fn is_feedforward(&self, path: &str) -> bool {
        match &self.feedforward_modules {
            TargetModules::Names(names) => names.iter().any(|name| path.ends_with(name.as_str())),
            other => other.matches(path),
        }
    }

    /// The Python library's default `(target_modules, feedforward_modules)` for transformers'
    /// `model_type` (`TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING` and
    /// `..._FEEDFORWARD_MODULES_MAPPING`), for the architectures this workspace builds; `None`
    /// for the others, where both must be named.
    pub fn defaults_for(model_type: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
        Some(match model_type {
            "t5" => (&["k", "v", "wo"], &["wo"]),
            "mt5" => (&["k", "v", "wi_1"], &[]),
            "gpt2" => (&["c_attn", "mlp.c_proj"], &["mlp.c_proj"]),
            "bloom" => (&["query_key_value", "mlp.dense_4h_to_h"], &["mlp.dense_4h_to_h"]),
            "bert" | "roberta" => (&["key", "value", "output.dense"], &["output.dense"]),
            "llama" | "mistral" => (&["k_proj", "v_proj", "down_proj"], &["down_proj"]),
            "qwen2" => (&["q_proj", "v_proj", "down_proj"], &["down_proj"]),
            _ => return None,
        })
    }

    /// Fills unset `target_modules` and `feedforward_modules` from [`Ia3Config::defaults_for`],
    /// as the Python library does when attaching (`model_type` `None`: a model without defaults).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field left unset when the architecture has no default.
    pub fn complete_for(&mut self, model_type: Option<&str>) -> Result<()> {
        let defaults = model_type.and_then(Self::defaults_for);
        let names = |list: &[&str]| TargetModules::Names(list.iter().map(|s| s.to_string()).collect());
        let about = model_type.map_or("this model".to_string(), |t| format!("model_type `{t}`"));
        if self.target_modules.is_none() {
            let (targets, _) = defaults.ok_or_else(|| {
                Error::config("target_modules", format!("null ({about} has no IA3 default)"), "name the layers to adapt, e.g. [\"k_proj\", \"v_proj\", \"down_proj\"]")
            })?;
            self.target_modules = names(targets);
        }
        if self.feedforward_modules.is_none() {
            let (_, feedforward) = defaults.ok_or_else(|| {
                Error::config(
                    "feedforward_modules",
                    format!("null ({about} has no IA3 default)"),
                    "name the targets whose input is scaled, e.g. [\"down_proj\"], or [] for none",
                )
            })?;
            self.feedforward_modules = names(feedforward);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_python_s() {
        let c: Ia3Config = serde_json::from_str(r#"{"target_modules": ["k", "v", "wo"]}"#).expect("parses");
        assert!(c.init_ia3_weights);
        assert!(!c.fan_in_fan_out);
        assert_eq!(c.feedforward_modules, TargetModules::None);
        c.validate().expect("valid");
    }

    #[test]
    fn feedforward_modules_must_be_targets() {
        let ok = Ia3Config::new(["k", "v", "wo"]).with_feedforward_modules(["wo"]);
        ok.validate().expect("a subset");
        assert!(ok.is_feedforward("encoder.block.0.layer.1.DenseReluDense.wo"));
        assert!(!ok.is_feedforward("encoder.block.0.layer.0.SelfAttention.k"));
        let bad = Ia3Config::new(["k", "v"]).with_feedforward_modules(["wo"]).validate().expect_err("not a subset");
        assert!(matches!(bad, Error::InvalidConfig { field: "feedforward_modules", .. }), "{bad:?}");
        assert!(bad.to_string().contains("\"wo\""), "{bad}");
        // A regular expression on either side is not compared, as in Python.
        Ia3Config::new(".*(k|v|wo)").with_feedforward_modules(["wo"]).validate().expect("regex targets");
        let regex = Ia3Config::new(["k"]).with_feedforward_modules("(wo").validate().expect_err("bad regex");
        assert!(regex.to_string().contains("feedforward_modules"), "{regex}");
    }

    #[test]
    fn feedforward_names_match_as_python_s_plain_suffix() {
        let c = Ia3Config::new(["down_proj"]).with_feedforward_modules(["proj"]);
        assert!(c.is_feedforward("model.layers.0.mlp.down_proj"), "a plain suffix, no dot needed");
        assert!(!c.is_feedforward("model.layers.0.mlp.proj_in"));
        let regex = Ia3Config::new(".*").with_feedforward_modules(".*mlp.*");
        assert!(regex.is_feedforward("model.layers.0.mlp.down_proj"));
        assert!(!regex.is_feedforward("model.layers.0.self_attn.k_proj"), "the whole path must match");
    }

    #[test]
    fn unset_fields_take_the_architecture_s_defaults() {
        let mut c = Ia3Config::default();
        c.complete_for(Some("llama")).expect("llama has defaults");
        assert_eq!(c.target_modules.names(), ["k_proj", "v_proj", "down_proj"]);
        assert_eq!(c.feedforward_modules.names(), ["down_proj"]);
        // Given targets stay; the feed-forward default still fills, as in Python.
        let mut mt5 = Ia3Config::new(["q"]);
        mt5.complete_for(Some("mt5")).expect("mt5 has defaults");
        assert_eq!(mt5.target_modules.names(), ["q"]);
        assert_eq!(mt5.feedforward_modules, TargetModules::Names(Vec::new()));
        let e = Ia3Config::default().complete_for(Some("vit")).expect_err("no defaults");
        assert!(matches!(e, Error::InvalidConfig { field: "target_modules", .. }), "{e:?}");
        let e = Ia3Config::new(["fc"]).complete_for(None).expect_err("no defaults");
        assert!(matches!(e, Error::InvalidConfig { field: "feedforward_modules", .. }), "{e:?}");
        assert!(e.to_string().contains("[] for none"), "{e}");
    }
}
