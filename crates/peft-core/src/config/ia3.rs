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
    /// A config adapting `target_modules`, none of them feed-forward, vectors starting at one.
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
    pub fn is_feedforward(&self, path: &str) -> bool {
        self.feedforward_modules.matches(path)
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
}
