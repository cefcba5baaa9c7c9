//! `LoraConfig`: the LoRA section of `adapter_config.json`, field for field.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::str::FromStr;

use super::common::CommonConfig;
use super::extra::ExtraKeys;
use crate::targets::{LayerIndices, LayersPattern, TargetModules, layer_selected, pattern_key_matches};
use crate::{Error, Result};

/// Which biases train along with the adapter (`bias` in `adapter_config.json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Bias {
    /// No bias trains (`"none"`).
    #[default]
    None,
    /// Every bias of the model trains and is saved with the adapter (`"all"`).
    All,
    /// The biases of the adapted layers train and are saved with the adapter (`"lora_only"`).
    LoraOnly,
}

impl Bias {
    /// The spelling in `adapter_config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bias::None => "none",
            Bias::All => "all",
            Bias::LoraOnly => "lora_only",
        }
    }
}

impl FromStr for Bias {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Bias::None),
            "all" => Ok(Bias::All),
            "lora_only" => Ok(Bias::LoraOnly),
            other => Err(Error::config("bias", format!("{other:?}"), "use \"none\", \"all\" or \"lora_only\"")),
        }
    }
}

impl Serialize for Bias {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Bias {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How the LoRA factors start (`init_lora_weights`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum InitLoraWeights {
    /// `true`: `A` Kaiming-uniform, `B` zero, so the adapter starts as the identity.
    #[default]
    Default,
    /// `"gaussian"`: `A` normal with standard deviation `1 / r`, `B` zero.
    Gaussian,
    /// `false`: both factors random, so the adapter changes the output from the start (for tests).
    Random,
    /// `"pissa"` / `"pissa_niter_K"` (Meng et al. 2024, arXiv 2404.02948): the factors start from the
    /// base weight's top `r` singular triplets, `B A = U_r S_r V_rᵀ / s`, and the base weight keeps
    /// the rest (`W - s B A`), so the output starts unchanged. `niter: Some(K)` takes the triplets
    /// from a randomised SVD with `K` subspace iterations (faster on large layers, approximate).
    Pissa {
        /// The randomised SVD's subspace iterations (`None`: the exact SVD).
        niter: Option<usize>,
    },
    /// `"olora"` (Büyükakyüz 2024, arXiv 2406.01775): `B = Q_r`, `A = R_r` from the QR factors of the
    /// base weight, and the base weight keeps `W - s B A`.
    Olora,
    /// Another initialisation of the Python library (`"corda"`, `"loftq"`, ...), not supported here.
    Other(String),
}

impl InitLoraWeights {
    /// Whether this initialisation moves part of the base weight into the factors (PiSSA, OLoRA):
    /// such adapters change their base model's weights when they are attached.
    pub fn decomposes_base(&self) -> bool {
        matches!(self, InitLoraWeights::Pissa { .. } | InitLoraWeights::Olora)
    }

    fn from_name(name: String) -> Self {
        match name.as_str() {
            "gaussian" => return InitLoraWeights::Gaussian,
            "pissa" => return InitLoraWeights::Pissa { niter: None },
            _ if name.eq_ignore_ascii_case("olora") => return InitLoraWeights::Olora,
            _ => {}
        }
        match name.strip_prefix("pissa_niter_").map(str::parse::<usize>) {
            Some(Ok(niter)) => InitLoraWeights::Pissa { niter: Some(niter) },
            _ => InitLoraWeights::Other(name),
        }
    }
}

impl Serialize for InitLoraWeights {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            InitLoraWeights::Default => s.serialize_bool(true),
            InitLoraWeights::Random => s.serialize_bool(false),
            InitLoraWeights::Gaussian => s.serialize_str("gaussian"),
            InitLoraWeights::Pissa { niter: None } => s.serialize_str("pissa"),
            InitLoraWeights::Pissa { niter: Some(k) } => s.serialize_str(&format!("pissa_niter_{k}")),
            InitLoraWeights::Olora => s.serialize_str("olora"),
            InitLoraWeights::Other(o) => s.serialize_str(o),
        }
    }
}

impl<'de> Deserialize<'de> for InitLoraWeights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Name(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Flag(true) => InitLoraWeights::Default,
            Raw::Flag(false) => InitLoraWeights::Random,
            Raw::Name(n) => InitLoraWeights::from_name(n),
        })
    }
}

/// The configuration of a LoRA adapter, as the Python library's `LoraConfig`.
///
/// The adapted layer computes `h = W0 x + s * B A dropout(x)` with `A: [r, in]`, `B: [out, r]` and
/// `s = lora_alpha / r` (`lora_alpha / sqrt(r)` with `use_rslora`).
///
/// On disk this is `adapter_config.json` with `"peft_type": "LORA"`; fields the file lacks take
/// the Python library's defaults, and keys this crate does not know are kept and written back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    /// The rank `r` of the update (`> 0`).
    pub r: usize,
    /// The scaling numerator `alpha`.
    pub lora_alpha: f64,
    /// Dropout probability on the adapter's input, in `[0, 1)`.
    pub lora_dropout: f64,
    /// The modules to adapt.
    pub target_modules: TargetModules,
    /// Modules never to adapt, with the same rules.
    pub exclude_modules: TargetModules,
    /// Which biases train.
    pub bias: Bias,
    /// Only layers with these indices are adapted.
    pub layers_to_transform: LayerIndices,
    /// The name of the layer list the indices refer to.
    pub layers_pattern: LayersPattern,
    /// Whether the base weights are stored `[in, out]` (GPT-2's `Conv1D`).
    pub fan_in_fan_out: bool,
    /// How the factors start.
    pub init_lora_weights: InitLoraWeights,
    /// Per-module ranks: regular expression keys matched as `(.*\.)?(key)$`.
    pub rank_pattern: IndexMap<String, usize>,
    /// Per-module alphas, keyed as `rank_pattern`.
    pub alpha_pattern: IndexMap<String, f64>,
    /// Rank-stabilised scaling `alpha / sqrt(r)`.
    pub use_rslora: bool,
    /// DoRA (weight-decomposed LoRA, Liu et al. 2024): a trained magnitude per output feature
    /// times the normalised direction `W0 + s A B`.
    pub use_dora: bool,
    /// The fields every method shares (`task_type`, `modules_to_save`, ...).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Keys of `adapter_config.json` this crate does not interpret, kept for writing back.
    /// (After `common`: serde offers each flattened field the keys the ones before it left.)
    #[serde(flatten)]
    pub extra: ExtraKeys,
}

crate::impl_method_config!(LoraConfig, Lora, PYTHON_LORA_KEYS);

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 8,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: TargetModules::None,
            exclude_modules: TargetModules::None,
            bias: Bias::None,
            layers_to_transform: LayerIndices::All,
            layers_pattern: LayersPattern::Any,
            fan_in_fan_out: false,
            init_lora_weights: InitLoraWeights::Default,
            rank_pattern: IndexMap::new(),
            alpha_pattern: IndexMap::new(),
            use_rslora: false,
            use_dora: false,
            common: CommonConfig::default(),
            extra: ExtraKeys::default(),
        }
    }
}

/// Keys the Python library writes for LoRA that this crate accepts while they hold their
/// default (off) value.
pub(crate) const PYTHON_LORA_KEYS: &[&str] = &[
    "alora_invocation_tokens",
    "arrow_config",
    "auto_mapping",
    "corda_config",
    "ensure_weight_tying",
    "eva_config",
    "exclude_modules",
    "kasa_config",
    "layer_replication",
    "loftq_config",
    "lora_bias",
    "lora_ga_config",
    "megatron_config",
    "megatron_core",
    "monteclora_config",
    "peft_version",
    "qalora_group_size",
    "target_parameters",
    "trainable_token_indices",
    "use_bdlora",
    "use_qalora",
    "velora_config",
];

impl LoraConfig {
    /// A config of rank `r` with the Python library's other defaults (`lora_alpha` 8, no dropout).
    pub fn new(r: usize) -> Self {
        LoraConfig { r, ..Default::default() }
    }

    /// Sets `lora_alpha`.
    pub fn with_lora_alpha(mut self, alpha: f64) -> Self {
        self.lora_alpha = alpha;
        self
    }
    /// Sets `lora_dropout`.
    pub fn with_lora_dropout(mut self, p: f64) -> Self {
        self.lora_dropout = p;
        self
    }
    /// Sets `target_modules`: names (`["q_proj", "v_proj"]`), a regular expression or `"all-linear"`.
    pub fn with_target_modules(mut self, targets: impl Into<TargetModules>) -> Self {
        self.target_modules = targets.into();
        self
    }
    /// Sets `exclude_modules`.
    pub fn with_exclude_modules(mut self, modules: impl Into<TargetModules>) -> Self {
        self.exclude_modules = modules.into();
        self
    }
    /// Sets `bias`.
    pub fn with_bias(mut self, bias: Bias) -> Self {
        self.bias = bias;
        self
    }
    /// Sets `layers_to_transform`.
    pub fn with_layers_to_transform(mut self, layers: impl IntoIterator<Item = usize>) -> Self {
        self.layers_to_transform = LayerIndices::Many(layers.into_iter().collect());
        self
    }
    /// Sets `layers_pattern`.
    pub fn with_layers_pattern(mut self, pattern: impl Into<String>) -> Self {
        self.layers_pattern = LayersPattern::One(pattern.into());
        self
    }
    /// Sets `fan_in_fan_out`.
    pub fn with_fan_in_fan_out(mut self, yes: bool) -> Self {
        self.fan_in_fan_out = yes;
        self
    }
    /// Sets `init_lora_weights`.
    pub fn with_init_lora_weights(mut self, init: InitLoraWeights) -> Self {
        self.init_lora_weights = init;
        self
    }
    /// Adds a `rank_pattern` entry.
    pub fn with_rank_pattern(mut self, key: impl Into<String>, r: usize) -> Self {
        self.rank_pattern.insert(key.into(), r);
        self
    }
    /// Adds an `alpha_pattern` entry.
    pub fn with_alpha_pattern(mut self, key: impl Into<String>, alpha: f64) -> Self {
        self.alpha_pattern.insert(key.into(), alpha);
        self
    }
    /// Sets `use_rslora`.
    pub fn with_use_rslora(mut self, yes: bool) -> Self {
        self.use_rslora = yes;
        self
    }
    /// Turns DoRA on or off.
    pub fn with_use_dora(mut self, yes: bool) -> Self {
        self.use_dora = yes;
        self
    }

    /// Checks every field a user can get wrong; each error names the field and the fix.
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 {
            return Err(Error::config("r", 0, "the rank must be at least 1 (8 or 16 are usual)"));
        }
        if let Some((key, _)) = self.rank_pattern.iter().find(|(_, r)| **r == 0) {
            return Err(Error::config("rank_pattern", key, "every rank must be at least 1"));
        }
        if !self.lora_alpha.is_finite() {
            return Err(Error::config("lora_alpha", self.lora_alpha, "use a finite number, usually r or 2 * r"));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(Error::config("lora_dropout", self.lora_dropout, "use a probability in [0, 1), such as 0.05"));
        }
        self.target_modules.validate("target_modules")?;
        self.exclude_modules.validate("exclude_modules")?;
        for key in self.rank_pattern.keys().chain(self.alpha_pattern.keys()) {
            regex::Regex::new(key)
                .map_err(|e| Error::config("rank_pattern", key, format!("keys are regular expressions: {e}")))?;
        }
        if let InitLoraWeights::Other(name) = &self.init_lora_weights {
            return Err(Error::Unsupported {
                what: format!("init_lora_weights = {name:?}"),
                supported: "true, false, \"gaussian\", \"pissa\", \"pissa_niter_K\" and \"olora\"".into(),
            });
        }
        self.extra.reject_enabled(PYTHON_LORA_KEYS)?;
        Ok(())
    }

    /// Whether the module at `path` passes `exclude_modules` and `layers_to_transform`.
    pub fn allows(&self, path: &str) -> bool {
        !self.exclude_modules.matches(path) && layer_selected(path, &self.layers_to_transform, &self.layers_pattern)
    }

    /// The rank for the module at `path` (`rank_pattern` first, else `r`).
    pub fn rank_for(&self, path: &str) -> usize {
        self.rank_pattern.iter().find(|(k, _)| pattern_key_matches(k, path)).map_or(self.r, |(_, r)| *r)
    }

    /// The alpha for the module at `path` (`alpha_pattern` first, else `lora_alpha`).
    pub fn alpha_for(&self, path: &str) -> f64 {
        self.alpha_pattern.iter().find(|(k, _)| pattern_key_matches(k, path)).map_or(self.lora_alpha, |(_, a)| *a)
    }

    /// The scaling `s` of the module at `path`: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub fn scaling_for(&self, path: &str) -> f64 {
        let r = self.rank_for(path) as f64;
        let alpha = self.alpha_for(path);
        if self.use_rslora { alpha / r.sqrt() } else { alpha / r }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_only_r_takes_the_python_defaults() {
        let c: LoraConfig = serde_json::from_str(r#"{"r": 4}"#).expect("parses");
        assert_eq!(c.r, 4);
        assert_eq!(c.lora_alpha, 8.0);
        assert_eq!(c.bias, Bias::None);
        assert_eq!(c.init_lora_weights, InitLoraWeights::Default);
    }

    #[test]
    fn rank_and_alpha_patterns_override_per_module() {
        let c = LoraConfig::new(8)
            .with_lora_alpha(16.0)
            .with_rank_pattern("v_proj", 4)
            .with_alpha_pattern(r"layers\.1\..*", 2.0);
        assert_eq!(c.rank_for("model.layers.0.self_attn.v_proj"), 4);
        assert_eq!(c.rank_for("model.layers.0.self_attn.q_proj"), 8);
        assert_eq!(c.scaling_for("model.layers.0.self_attn.q_proj"), 2.0);
        assert_eq!(c.scaling_for("model.layers.0.self_attn.v_proj"), 4.0);
        assert_eq!(c.scaling_for("model.layers.1.self_attn.q_proj"), 0.25);
        assert_eq!(c.with_use_rslora(true).scaling_for("x.q_proj"), 16.0 / 8f64.sqrt());
    }

    #[test]
    fn bad_values_name_the_field() {
        let zero = LoraConfig::new(0).validate().expect_err("r = 0 is rejected");
        assert!(zero.to_string().contains("`r`"), "{zero}");
        let dropout = LoraConfig::new(8).with_lora_dropout(1.5).validate().expect_err("dropout 1.5 is rejected");
        assert!(dropout.to_string().contains("lora_dropout"));
        let bias = serde_json::from_str::<LoraConfig>(r#"{"bias": "some"}"#).expect_err("unknown bias");
        assert!(bias.to_string().contains("lora_only"), "{bias}");
        assert!("some".parse::<Bias>().is_err());
        let regex = LoraConfig::new(8).with_target_modules("(unclosed").validate().expect_err("bad regex");
        assert!(regex.to_string().contains("target_modules"));
    }

    #[test]
    fn pissa_and_olora_names_round_trip() {
        for (name, init) in [
            ("pissa", InitLoraWeights::Pissa { niter: None }),
            ("pissa_niter_16", InitLoraWeights::Pissa { niter: Some(16) }),
            ("olora", InitLoraWeights::Olora),
        ] {
            let parsed: InitLoraWeights = serde_json::from_value(serde_json::json!(name)).expect("parses");
            assert_eq!(parsed, init);
            assert!(parsed.decomposes_base());
            assert_eq!(serde_json::to_value(&parsed).expect("writes"), serde_json::json!(name));
            LoraConfig::new(4).with_init_lora_weights(parsed).validate().expect("supported");
        }
        let odd: InitLoraWeights = serde_json::from_value(serde_json::json!("pissa_niter_x")).expect("parses");
        assert_eq!(odd, InitLoraWeights::Other("pissa_niter_x".into()));
        let err = LoraConfig::new(4).with_init_lora_weights(odd).validate().expect_err("not a number of iterations");
        assert!(err.to_string().contains("pissa_niter_K"), "{err}");
        assert!(!InitLoraWeights::Gaussian.decomposes_base());
    }
}
