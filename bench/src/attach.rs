//! Attaching LoRA to every linear layer of a very large Llama, built lazily.
//!
//! Burn creates parameters lazily (`Param::uninitialized`): a model whose construction does not
//! read its weights allocates nothing for them, so a 70B-shaped model can be built and given
//! adapters on a machine with 24 GB. Whether the model code keeps it that way is what
//! [`probe_lazy`] checks, on a small model, before anything large is built.

use anyhow::{Context, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use peft::{LoraConfig, get_peft_model};
use serde::Serialize;
use std::time::Instant;

use crate::llama::{LlamaConfig, LlamaForCausalLM};
use crate::memory::{mib, reset_peak, rss};

/// Llama-70B's shape (Llama 3): 8192 wide, 28672 MLP, 64 heads, 8 kv heads, vocab 128256.
pub fn llama_70b(num_hidden_layers: usize) -> LlamaConfig {
    LlamaConfig {
        hidden_size: 8192,
        intermediate_size: 28672,
        num_hidden_layers,
        num_attention_heads: 64,
        num_key_value_heads: Some(8),
        vocab_size: 128_256,
        rope_theta: Some(500_000.0),
        max_position_embeddings: 8192,
        ..LlamaConfig::default()
    }
}

/// The LoRA config attached: rank 16, alpha 32, every linear layer.
pub fn lora_config() -> LoraConfig {
    LoraConfig::new(16).with_lora_alpha(32.0).with_target_modules("all-linear")
}

/// Parameters of a Llama without its norms, `(outside the layers, per layer)`: embedding and
/// `lm_head`, then the seven projections of one decoder layer.
pub fn parameter_counts(c: &LlamaConfig) -> (usize, usize) {
    let kv = c.head_dim() * c.num_key_value_heads();
    let outside = 2 * c.vocab_size * c.hidden_size;
    let per_layer = 2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * kv + 3 * c.hidden_size * c.intermediate_size;
    (outside, per_layer)
}

/// Counts the base model's parameters (not the adapters') and how many of them hold a value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Materialized {
    /// Base parameter tensors.
    pub params: usize,
    /// Base parameter tensors whose value exists (norm weights are built eagerly; they are small).
    pub initialized: usize,
    /// Elements in the base tensors whose value exists.
    pub initialized_elements: usize,
    /// Elements in all base tensors.
    pub elements: usize,
    #[serde(skip)]
    path: Vec<String>,
}

impl Materialized {
    /// Whether at most 1% of the base elements exist: the weights are lazy (what is left is norms).
    pub fn is_lazy(&self) -> bool {
        self.initialized_elements * 100 <= self.elements
    }
}

impl ModuleVisitor for Materialized {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Adapters are created with values on purpose; only the base must stay lazy.
        if self.path.iter().any(|s| s == "adapters") {
            return;
        }
        let n = param.lazy_shape().num_elements();
        self.params += 1;
        self.elements += n;
        if param.is_initialized() {
            self.initialized += 1;
            self.initialized_elements += n;
        }
    }
}

/// What [`probe_lazy`] saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Probe {
    /// Whether building the model left every base weight uninitialised.
    pub lazy: bool,
    /// Base weights that were initialised by `new` (out of all of them).
    pub materialized: Materialized,
    /// RSS growth over `new`, in MiB.
    pub rss_growth_mb: f64,
    /// What the weights would take if materialised, in MiB.
    pub weights_mb: f64,
}

/// Builds a small model of the same code on `device` and reports whether `new` materialised its
/// weights: cheap (a few hundred MB at worst) and decisive before building 70B parameters.
pub fn probe_lazy(device: &Device) -> Result<Probe> {
    let config = LlamaConfig {
        hidden_size: 1024,
        intermediate_size: 2816,
        num_hidden_layers: 2,
        num_attention_heads: 8,
        num_key_value_heads: Some(8),
        vocab_size: 8192,
        ..LlamaConfig::default()
    };
    let before = rss()?.current;
    let model = LlamaForCausalLM::new(&config, device);
    let after = rss()?.current;
    let mut seen = Materialized::default();
    model.visit(&mut seen);
    drop(model);
    Ok(Probe {
        lazy: seen.is_lazy(),
        rss_growth_mb: mib(after.saturating_sub(before)),
        weights_mb: mib(4 * seen.elements as u64),
        materialized: seen,
    })
}

/// What attaching LoRA to the large model cost.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AttachReport {
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// Vocabulary.
    pub vocab_size: usize,
    /// Decoder layers actually built.
    pub num_hidden_layers: usize,
    /// Decoder layers asked for.
    pub requested_layers: usize,
    /// Base parameters (counted from the built model; estimated when none was built).
    pub base_params: usize,
    /// Sites that received an adapter.
    pub sites: usize,
    /// Adapter parameters.
    pub trainable_params: usize,
    /// Whether the base stayed uninitialised through `new` and `get_peft_model`.
    pub lazy_base: bool,
    /// Seconds for `LlamaForCausalLM::new`.
    pub new_s: f64,
    /// Seconds for `get_peft_model`.
    pub attach_s: f64,
    /// RSS before building the model, in MiB (the process itself).
    pub rss_start_mb: f64,
    /// RSS after `new`, in MiB.
    pub rss_after_new_mb: f64,
    /// RSS after `get_peft_model`, in MiB.
    pub rss_after_attach_mb: f64,
    /// Peak RSS of the process over `new` and `get_peft_model`, in MiB.
    pub peak_rss_mb: f64,
    /// What of the large model's base exists after `get_peft_model`.
    pub base_materialized: Materialized,
    /// The lazy-init probe run first.
    pub probe: Probe,
    /// Why fewer layers than asked were built, if so.
    pub note: Option<String>,
}

/// Probes for lazy construction, picks the depth that fits (all `requested_layers` when the base
/// stays lazy), builds the 8192-wide model and times `get_peft_model` on it.
pub fn run(requested_layers: usize, device: &Device) -> Result<AttachReport> {
    let probe = probe_lazy(device)?;
    let (layers, note) = if probe.lazy {
        (requested_layers, None)
    } else {
        let (outside, per_layer) = parameter_counts(&llama_70b(1));
        let budget = available_bytes()? * 6 / 10;
        let fits = budget.saturating_sub(4 * outside as u64) / (4 * per_layer as u64);
        let layers = (fits as usize).min(requested_layers);
        let note = format!(
            "`LlamaForCausalLM::new` materialised {} of {} weight tensors of a small probe model (RSS +{:.0} MB \
             for {:.0} MB of weights): the base is not lazy, so only {layers} of {requested_layers} layers fit in \
             60% of the available memory.",
            probe.materialized.initialized, probe.materialized.params, probe.rss_growth_mb, probe.weights_mb
        );
        (layers, Some(note))
    };
    let config = llama_70b(layers);
    let (outside, per_layer) = parameter_counts(&config);
    let mut report = AttachReport {
        hidden_size: config.hidden_size,
        intermediate_size: config.intermediate_size,
        num_attention_heads: config.num_attention_heads,
        num_key_value_heads: config.num_key_value_heads(),
        vocab_size: config.vocab_size,
        num_hidden_layers: layers,
        requested_layers,
        base_params: outside + layers * per_layer,
        probe,
        note,
        ..AttachReport::default()
    };
    if layers == 0 {
        return Ok(report);
    }
    let start = rss()?.current;
    reset_peak();
    let clock = Instant::now();
    let model = LlamaForCausalLM::new(&config, device);
    report.new_s = clock.elapsed().as_secs_f64();
    let after_new = rss()?.current;
    let clock = Instant::now();
    let peft = get_peft_model(model, lora_config()).context("get_peft_model on the large model")?;
    report.attach_s = clock.elapsed().as_secs_f64();
    let after = rss()?;
    report.sites = peft.targeted_modules("default").map(|t| t.len()).unwrap_or(0);
    report.trainable_params = peft.trainable_parameters().0;
    let mut seen = Materialized::default();
    peft.model().visit(&mut seen);
    report.lazy_base = seen.is_lazy();
    report.base_params = seen.elements;
    report.base_materialized = seen;
    report.rss_start_mb = mib(start);
    report.rss_after_new_mb = mib(after_new);
    report.rss_after_attach_mb = mib(after.current);
    report.peak_rss_mb = mib(after.peak);
    Ok(report)
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn available_bytes() -> Result<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:")).context("no MemAvailable in /proc/meminfo")?;
    let kb: u64 = line
        .trim_start_matches("MemAvailable:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("cannot read `{line}`"))?;
    Ok(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The large-model benchmark relies on `LlamaForCausalLM::new` allocating no weights.
    #[test]
    fn the_llama_builds_lazily() {
        let probe = probe_lazy(&Device::flex()).expect("probes");
        assert!(probe.lazy, "{probe:?}");
    }

    #[test]
    fn parameter_counts_match_llama_70b() {
        let (outside, per_layer) = parameter_counts(&llama_70b(80));
        // 70.55B without norms: the embedding and head, 80 layers of projections.
        assert_eq!(outside + 80 * per_layer, 70_553_706_496 - (2 * 80 + 1) * 8192);
    }
}
