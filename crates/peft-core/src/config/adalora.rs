//! `AdaLoraConfig`: the AdaLoRA section of `adapter_config.json`, field for field.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::common::CommonConfig;
use super::extra::{ExtraKeys, is_on};
use super::lora::{Bias, InitLoraWeights};
use crate::targets::{LayerIndices, LayersPattern, TargetModules};
use crate::{Error, Result};

/// The configuration of an AdaLoRA adapter, as the Python library's `AdaLoraConfig`.
///
/// AdaLoRA is LoRA in SVD form (`W0 + B E A`, `E` a vector of singular values) whose ranks start
/// at `init_r` and are pruned during training towards an average of `target_r`, by a schedule of
/// three phases: `tinit` warm-up steps, then budget reduction every `deltaT` steps until
/// `total_step - tfinal`, then `tfinal` steps of fine-tuning at the final ranks.
///
/// The Python class derives from `LoraConfig`, so the file holds every LoRA key too. The LoRA
/// fields AdaLoRA reads are fields here; the ones it ignores (`r`, `use_rslora`, `alpha_pattern`,
/// ...) are known keys kept as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdaLoraConfig {
    /// The average rank the budget is reduced to (`> 0`, at most `init_r`).
    pub target_r: usize,
    /// The rank every adapted layer starts with (`> 0`).
    pub init_r: usize,
    /// Warm-up steps before ranks are reduced.
    pub tinit: usize,
    /// Final steps at the reduced ranks.
    pub tfinal: usize,
    /// Steps between two budget allocations (`deltaT` in the file, `> 0`).
    #[serde(rename = "deltaT")]
    pub delta_t: usize,
    /// Exponential moving average coefficient of the sensitivity, in `[0, 1)`.
    pub beta1: f64,
    /// Exponential moving average coefficient of the uncertainty, in `[0, 1)`.
    pub beta2: f64,
    /// Coefficient of the orthogonality regulariser on `A` and `B` (`>= 0`).
    pub orth_reg_weight: f64,
    /// Total training steps; required, as the schedule is laid out over them.
    pub total_step: Option<usize>,
    /// The ranks the allocator kept: per `lora_E` parameter (`"q_proj.lora_E"`), one flag per
    /// initial rank. Written by training; `None` before.
    pub rank_pattern: Option<IndexMap<String, Vec<bool>>>,
    /// The scaling numerator (AdaLoRA scales by `lora_alpha / ranknum`, the live rank).
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
    /// How the factors start (`true`: `E` zero, `A` and `B` normal).
    pub init_lora_weights: InitLoraWeights,
    /// The fields every method shares (`task_type`, `modules_to_save`, ...).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Keys of `adapter_config.json` this crate does not interpret, kept for writing back.
    /// (After `common`: serde offers each flattened field the keys the ones before it left.)
    #[serde(flatten)]
    pub extra: ExtraKeys,
}

crate::impl_method_config!(AdaLoraConfig, AdaLora, PYTHON_ADALORA_KEYS);

impl Default for AdaLoraConfig {
    fn default() -> Self {
        AdaLoraConfig {
            target_r: 8,
            init_r: 12,
            tinit: 0,
            tfinal: 0,
            delta_t: 1,
            beta1: 0.85,
            beta2: 0.85,
            orth_reg_weight: 0.5,
            total_step: None,
            rank_pattern: None,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: TargetModules::None,
            exclude_modules: TargetModules::None,
            bias: Bias::None,
            layers_to_transform: LayerIndices::All,
            layers_pattern: LayersPattern::Any,
            fan_in_fan_out: false,
            init_lora_weights: InitLoraWeights::Default,
            common: CommonConfig::default(),
            extra: ExtraKeys::default(),
        }
    }
}

/// Keys the Python library writes for AdaLoRA that this crate accepts while they hold their
/// default (off) value: LoRA's, plus the LoRA fields AdaLoRA ignores.
pub(crate) const PYTHON_ADALORA_KEYS: &[&str] = &[
    "alora_invocation_tokens",
    "alpha_pattern",
    "arrow_config",
    "auto_mapping",
    "corda_config",
    "ensure_weight_tying",
    "eva_config",
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
    "r",
    "target_parameters",
    "trainable_token_indices",
    "use_bdlora",
    "use_dora",
    "use_qalora",
    "use_rslora",
    "velora_config",
];

/// LoRA keys the Python library refuses for AdaLoRA when set.
const REFUSED_BY_PYTHON: &[(&str, &str)] = &[("use_dora", "DoRA"), ("loftq_config", "LoftQ")];

impl AdaLoraConfig {
    /// A config for a training run of `total_step` steps with the Python library's other
    /// defaults (`init_r` 12 pruned towards `target_r` 8, `lora_alpha` 8).
    pub fn new(total_step: usize) -> Self {
        AdaLoraConfig { total_step: Some(total_step), ..Default::default() }
    }

    /// Sets `target_r`, the average rank to prune towards.
    pub fn with_target_r(mut self, r: usize) -> Self {
        self.target_r = r;
        self
    }
    /// Sets `init_r`, the starting rank.
    pub fn with_init_r(mut self, r: usize) -> Self {
        self.init_r = r;
        self
    }
    /// Sets `tinit`, the warm-up steps.
    pub fn with_tinit(mut self, steps: usize) -> Self {
        self.tinit = steps;
        self
    }
    /// Sets `tfinal`, the final steps at fixed ranks.
    pub fn with_tfinal(mut self, steps: usize) -> Self {
        self.tfinal = steps;
        self
    }
    /// Sets `deltaT`, the steps between budget allocations.
    pub fn with_delta_t(mut self, steps: usize) -> Self {
        self.delta_t = steps;
        self
    }
    /// Sets `beta1` and `beta2`, the moving-average coefficients.
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }
    /// Sets `orth_reg_weight`.
    pub fn with_orth_reg_weight(mut self, weight: f64) -> Self {
        self.orth_reg_weight = weight;
        self
    }
    /// Sets `total_step`.
    pub fn with_total_step(mut self, steps: usize) -> Self {
        self.total_step = Some(steps);
        self
    }
    /// Sets the kept ranks of one `lora_E` parameter (`"q_proj.lora_E"`), one flag per initial rank.
    pub fn with_rank_pattern(mut self, key: impl Into<String>, kept: Vec<bool>) -> Self {
        self.rank_pattern.get_or_insert_with(IndexMap::new).insert(key.into(), kept);
        self
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

    /// Checks every field a user can get wrong, as the Python library does when it builds the
    /// config; each error names the field and the fix.
    pub fn validate(&self) -> Result<()> {
        let Some(total_step) = self.total_step.filter(|&t| t > 0) else {
            let value = self.total_step.map_or_else(|| "null".to_string(), |t| t.to_string());
            return Err(Error::config("total_step", value, "AdaLoRA lays its rank schedule over the training run: set the number of training steps (> 0)"));
        };
        // Python: `tinit >= total_step - tfinal` leaves no step in which ranks are reduced.
        if self.tinit + self.tfinal >= total_step {
            return Err(Error::config(
                "tinit",
                format!("{} (tfinal {}, total_step {total_step})", self.tinit, self.tfinal),
                "tinit + tfinal must be below total_step so a budgeting phase remains; decrease tinit/tfinal or increase total_step",
            ));
        }
        if self.init_r == 0 {
            return Err(Error::config("init_r", 0, "the starting rank must be at least 1 (12 is the default)"));
        }
        // The allocator prunes from init_r down; a larger target would ask it to add ranks.
        if self.target_r == 0 || self.target_r > self.init_r {
            return Err(Error::config("target_r", self.target_r, format!("use a rank from 1 to init_r ({})", self.init_r)));
        }
        if self.delta_t == 0 {
            return Err(Error::config("deltaT", 0, "budget allocations need at least 1 step between them"));
        }
        for (field, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::config(field, beta, "use a moving-average coefficient in [0, 1), such as 0.85"));
            }
        }
        if !(self.orth_reg_weight.is_finite() && self.orth_reg_weight >= 0.0) {
            return Err(Error::config("orth_reg_weight", self.orth_reg_weight, "use a weight >= 0, such as 0.5"));
        }
        if let Some((key, _)) = self.rank_pattern.iter().flatten().find(|(_, kept)| kept.len() != self.init_r) {
            return Err(Error::config("rank_pattern", key, format!("every entry needs one flag per initial rank (init_r = {})", self.init_r)));
        }
        if !self.lora_alpha.is_finite() {
            return Err(Error::config("lora_alpha", self.lora_alpha, "use a finite number"));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(Error::config("lora_dropout", self.lora_dropout, "use a probability in [0, 1), such as 0.05"));
        }
        self.target_modules.validate("target_modules")?;
        self.exclude_modules.validate("exclude_modules")?;
        if matches!(self.target_modules, TargetModules::Regex(_)) && !self.layers_to_transform.is_all() {
            return Err(Error::config(
                "layers_to_transform",
                format!("{:?}", self.layers_to_transform),
                "cannot be used when target_modules is a regular expression; put the layer in the expression",
            ));
        }
        if !self.layers_pattern.is_any() && self.layers_to_transform.is_all() {
            return Err(Error::config("layers_pattern", format!("{:?}", self.layers_pattern), "set layers_to_transform too, or remove layers_pattern"));
        }
        if matches!(self.init_lora_weights, InitLoraWeights::Other(_)) || self.init_lora_weights.decomposes_base() {
            return Err(Error::Unsupported {
                what: format!("init_lora_weights = {} with AdaLoRA", serde_json::json!(self.init_lora_weights)),
                supported: "true, false and \"gaussian\"".into(),
            });
        }
        for (key, feature) in REFUSED_BY_PYTHON {
            if let Some(value) = self.extra.0.get(*key).filter(|v| is_on(v)) {
                return Err(Error::Unsupported {
                    what: format!("`{key}` = {value}: AdaLoRA with {feature}"),
                    supported: format!("AdaLoRA with `{key}` left at false/empty, as the Python library requires"),
                });
            }
        }
        self.extra.reject_enabled(PYTHON_ADALORA_KEYS)
    }
}

#[cfg(test)]
mod tests {
    use super::super::lora::PYTHON_LORA_KEYS;
    use super::*;

    // Keeps the two key lists from drifting apart: the Python class derives from LoraConfig.
    #[test]
    fn every_lora_key_is_an_adalora_key() {
        let missing: Vec<_> =
            PYTHON_LORA_KEYS.iter().filter(|k| !PYTHON_ADALORA_KEYS.contains(k) && **k != "exclude_modules").collect();
        assert!(missing.is_empty(), "LoRA keys missing from PYTHON_ADALORA_KEYS: {missing:?}");
    }

    #[test]
    fn a_file_with_only_total_step_takes_the_python_defaults() {
        let c: AdaLoraConfig = serde_json::from_str(r#"{"total_step": 100, "deltaT": 4}"#).expect("parses");
        assert_eq!((c.init_r, c.target_r, c.tinit, c.tfinal, c.delta_t), (12, 8, 0, 0, 4));
        assert_eq!((c.beta1, c.beta2, c.orth_reg_weight), (0.85, 0.85, 0.5));
        assert_eq!(c.rank_pattern, None);
        c.validate().expect("valid");
        let json = serde_json::to_value(&c).expect("serialises");
        assert_eq!(json["deltaT"], 4, "{json}");
        assert!(json.get("delta_t").is_none());
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases: [(AdaLoraConfig, &str); 9] = [
            (AdaLoraConfig::default(), "`total_step`"),
            (AdaLoraConfig::new(0), "`total_step`"),
            (AdaLoraConfig::new(10).with_tinit(4).with_tfinal(6), "`tinit`"),
            (AdaLoraConfig::new(10).with_init_r(4).with_target_r(6), "`target_r`"),
            (AdaLoraConfig::new(10).with_delta_t(0), "`deltaT`"),
            (AdaLoraConfig::new(10).with_betas(0.85, 1.0), "`beta2`"),
            (AdaLoraConfig::new(10).with_orth_reg_weight(-0.1), "`orth_reg_weight`"),
            (AdaLoraConfig::new(10).with_rank_pattern("q_proj.lora_E", vec![true; 3]), "`rank_pattern`"),
            (AdaLoraConfig::new(10).with_target_modules(".*proj").with_layers_to_transform([0]), "`layers_to_transform`"),
        ];
        for (config, field) in cases {
            let e = config.validate().expect_err(field);
            assert!(matches!(e, Error::InvalidConfig { .. }), "{e:?}");
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn features_python_refuses_are_refused() {
        let dora: AdaLoraConfig = serde_json::from_str(r#"{"total_step": 10, "use_dora": true}"#).expect("parses");
        let e = dora.validate().expect_err("DoRA");
        assert!(e.to_string().contains("use_dora"), "{e}");
        let off: AdaLoraConfig = serde_json::from_str(r#"{"total_step": 10, "use_dora": false, "loftq_config": {}}"#).expect("parses");
        off.validate().expect("off values pass");
    }
}
