//! The training-step workload: one Llama-shaped model, one batch, three ways to train it.

use anyhow::{Context, Result, bail};
use burn::module::{Lora, Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Distribution, Int, Tensor};
use peft::{Labels, LoraConfig, ModelInputs, PeftConfig, PeftModel, PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model};
use serde::Serialize;

use crate::llama::{LlamaConfig, LlamaForCausalLM};
use peft::models::layers::causal_lm_loss;

/// Learning rate of the AdamW steps (the value does not change the cost of a step).
const LEARNING_RATE: f64 = 1e-4;

/// The parameters Burn's `apply_lora` adapts: every linear weight inside the decoder layers, the
/// same sites as peft's `all-linear` (which leaves out `lm_head`; the embedding is not linear).
/// peft's layers keep the base `Linear` under `base_layer`, so the weights end in that.
pub const APPLY_LORA_WEIGHTS: &str = r"^model\.layers\.\d+\.(self_attn|mlp)\.[a-z_]+_proj\.base_layer\.weight$";

/// The model and batch sizes of one run, and how many steps to time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Sequences per batch.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha (scaling `alpha / rank`).
    pub alpha: f64,
    /// Virtual tokens of the prompt-tuning and prefix-tuning variants.
    pub num_virtual_tokens: usize,
    /// Untimed steps first (allocator and caches settle).
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
}

impl Workload {
    /// The full run: a step takes a few hundred milliseconds on 2 cores.
    pub fn full() -> Self {
        Workload {
            hidden_size: 512,
            intermediate_size: 1408,
            num_hidden_layers: 4,
            num_attention_heads: 8,
            num_key_value_heads: 8,
            vocab_size: 2048,
            batch: 8,
            seq: 64,
            rank: 16,
            alpha: 32.0,
            num_virtual_tokens: 8,
            warmup: 3,
            steps: 20,
        }
    }

    /// A much smaller model, so that `--quick` and `cargo bench` finish in well under a minute.
    pub fn quick() -> Self {
        Workload {
            hidden_size: 128,
            intermediate_size: 352,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 4,
            vocab_size: 512,
            batch: 4,
            seq: 32,
            warmup: 2,
            steps: 5,
            ..Self::full()
        }
    }

    /// The model's config.
    pub fn llama_config(&self) -> LlamaConfig {
        LlamaConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: Some(self.num_key_value_heads),
            vocab_size: self.vocab_size,
            max_position_embeddings: self.seq.max(128),
            ..LlamaConfig::default()
        }
    }

    /// The LoRA config of the `peft_lora` variant.
    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig::new(self.rank).with_lora_alpha(self.alpha).with_target_modules("all-linear")
    }

    /// The config of a peft variant.
    fn peft_config(&self, variant: Variant) -> Option<PeftConfig> {
        let tokens = self.num_virtual_tokens;
        Some(match variant {
            Variant::PeftLora => self.lora_config().into(),
            Variant::PeftDora => self.lora_config().with_use_dora(true).into(),
            Variant::PeftPromptTuning => PromptTuningConfig::new(tokens).with_task_type(TaskType::CausalLm).into(),
            Variant::PeftPrefixTuning => PrefixTuningConfig::new(tokens).with_task_type(TaskType::CausalLm).into(),
            Variant::Frozen | Variant::BurnApplyLora => return None,
        })
    }
}

/// One way to run a training step on the workload's model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Every weight frozen; forward and backward down to the input embeddings, no optimizer: the
    /// floor any adapter pays (activation gradients through every layer).
    Frozen,
    /// peft's LoRA on all linear layers, AdamW on the adapters.
    PeftLora,
    /// peft's DoRA (`use_dora`) on the same layers: LoRA plus a magnitude per output feature.
    PeftDora,
    /// Burn's own `Module::apply_lora` (weight reparameterization) on the same weights, AdamW.
    BurnApplyLora,
    /// peft's prompt tuning: `num_virtual_tokens` learned input vectors, AdamW.
    PeftPromptTuning,
    /// peft's prefix tuning: `num_virtual_tokens` learned keys and values per layer, AdamW.
    PeftPrefixTuning,
}

impl Variant {
    /// Every variant, in report order.
    pub const ALL: [Variant; 6] =
        [Variant::Frozen, Variant::PeftLora, Variant::PeftDora, Variant::BurnApplyLora, Variant::PeftPromptTuning, Variant::PeftPrefixTuning];

    /// The name used on the command line and in `rust.json`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Frozen => "frozen",
            Variant::PeftLora => "peft_lora",
            Variant::PeftDora => "peft_dora",
            Variant::BurnApplyLora => "burn_apply_lora",
            Variant::PeftPromptTuning => "peft_prompt_tuning",
            Variant::PeftPrefixTuning => "peft_prefix_tuning",
        }
    }

    /// The variant called `name`.
    pub fn from_name(name: &str) -> Result<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name).with_context(|| {
            let known: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
            format!("unknown variant `{name}`; known: {}", known.join(", "))
        })
    }
}

enum Model {
    Frozen(LlamaForCausalLM),
    // `Option` because the optimizer takes the model by value and hands it back.
    Peft(Option<PeftModel<LlamaForCausalLM>>, ModuleOptimizer),
    Apply(Option<LlamaForCausalLM>, ModuleOptimizer),
}

/// A model set up for one [`Variant`], with its batch, ready to run steps.
pub struct Trainer {
    variant: Variant,
    model: Model,
    input_ids: Tensor<2, Int>,
    device: Device,
}

impl Trainer {
    /// Builds the model for `variant` on `device` (an autodiff device) with a random batch.
    pub fn new(variant: Variant, workload: &Workload, device: &Device) -> Result<Trainer> {
        let base = LlamaForCausalLM::new(&workload.llama_config(), device);
        let model = match variant {
            Variant::Frozen => Model::Frozen(base.no_grad()),
            Variant::PeftLora | Variant::PeftDora | Variant::PeftPromptTuning | Variant::PeftPrefixTuning => {
                let config = workload.peft_config(variant).context("a peft variant has a config")?;
                let peft = get_peft_model(base, config).context("get_peft_model")?;
                Model::Peft(Some(peft), AdamWConfig::new().init())
            }
            Variant::BurnApplyLora => {
                let group = ParamGroup::from_regex(APPLY_LORA_WEIGHTS)
                    .map_err(|e| anyhow::anyhow!("bad parameter regex: {e:?}"))?;
                let lora = Lora::new(workload.rank, workload.alpha).set_param_group(group);
                Model::Apply(Some(base.apply_lora(lora)), AdamWConfig::new().init())
            }
        };
        let input_ids = Tensor::<2, Int>::random(
            [workload.batch, workload.seq],
            Distribution::Uniform(0.0, workload.vocab_size as f64),
            device,
        );
        let trainer = Trainer { variant, model, input_ids, device: device.clone() };
        trainer.check_sites(workload)?;
        Ok(trainer)
    }

    /// The variant this trainer runs.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Initialises every lazily initialised parameter now, so that a memory baseline taken
    /// afterwards holds the whole model and the steps measure only what training adds.
    pub fn materialize(&self) {
        struct Touch;
        impl ModuleVisitor for Touch {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                // Reading the base value runs a pending initialiser (and nothing else).
                let _ = param.base();
            }
        }
        match &self.model {
            Model::Frozen(m) => m.visit(&mut Touch),
            Model::Peft(m, _) => m.iter().for_each(|m| m.visit(&mut Touch)),
            Model::Apply(m, _) => m.iter().for_each(|m| m.visit(&mut Touch)),
        }
    }

    /// `(trainable, all)` parameter counts.
    pub fn parameters(&self) -> (usize, usize) {
        let mut count = Count::default();
        match &self.model {
            Model::Frozen(m) => m.visit(&mut count),
            Model::Peft(m, _) => m.iter().for_each(|m| m.visit(&mut count)),
            Model::Apply(m, _) => m.iter().for_each(|m| m.visit(&mut count)),
        }
        (count.trainable, count.total)
    }

    /// One training step; returns the loss, whose read also waits for all queued work.
    pub fn step(&mut self) -> Result<f32> {
        let ids = self.input_ids.clone();
        let loss = match &mut self.model {
            Model::Frozen(model) => {
                // The input embeddings require grad, so the backward runs through every layer.
                let embeds = model.model.embed(ids.clone()).detach().require_grad();
                let loss = causal_lm_loss(model.forward_embeds(embeds, None, None), ids);
                let value = loss.clone();
                drop(loss.backward());
                value
            }
            Model::Peft(slot, optim) => {
                let model = slot.take().context("model lost by an earlier failed step")?;
                let loss = match self.variant {
                    // Prompt methods add inputs: the whole PeftModel forward (virtual tokens,
                    // labels padded for them).
                    Variant::PeftPromptTuning | Variant::PeftPrefixTuning => {
                        model.forward(ModelInputs::ids(ids.clone()).with_labels(Labels::Tokens(ids)))?.loss.context("labels give a loss")?
                    }
                    _ => model.model().forward_with_loss(ids.clone(), None, ids).1,
                };
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                *slot = Some(optim.step(LEARNING_RATE, model, grads));
                loss
            }
            Model::Apply(slot, optim) => {
                let model = slot.take().context("model lost by an earlier failed step")?;
                let (_, loss) = model.forward_with_loss(ids.clone(), None, ids);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                *slot = Some(optim.step(LEARNING_RATE, model, grads));
                loss
            }
        };
        let value = loss.into_scalar::<f32>();
        // On CPU backends the read above already waited; CubeCL backends may still be busy.
        self.device.sync().map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))?;
        Ok(value)
    }

    /// Checks that the adapters sit where the comparison needs them: Burn's `apply_lora` on
    /// exactly the weights peft adapts (a regex that missed the `base_layer` paths would compare
    /// peft against a model with no adapter at all).
    fn check_sites(&self, workload: &Workload) -> Result<()> {
        let expected = 7 * workload.num_hidden_layers;
        if matches!(self.variant, Variant::PeftPromptTuning | Variant::PeftPrefixTuning) {
            return Ok(());
        }
        let found = match &self.model {
            Model::Frozen(_) => return Ok(()),
            Model::Peft(m, _) => m.as_ref().map_or(0, |m| m.targeted_modules("default").map_or(0, |t| t.len())),
            Model::Apply(m, _) => {
                let mut count = Count::default();
                m.iter().for_each(|m| m.visit(&mut count));
                count.reparameterized
            }
        };
        if found != expected {
            bail!("{}: {found} adapted layers, expected {expected} (7 per decoder layer)", self.variant.name());
        }
        Ok(())
    }
}

/// Counts parameters, trainable ones and reparameterized (LoRA-adapted) weights.
#[derive(Default)]
struct Count {
    total: usize,
    trainable: usize,
    reparameterized: usize,
}

impl ModuleVisitor for Count {
    fn enter_module(&mut self, _: &str, container_type: &str) {
        // Burn enters a weight's reparameterization (its LoRA factors) as this container.
        if container_type == "Reparameterization" {
            self.reparameterized += 1;
        }
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.lazy_shape().num_elements();
        self.total += n;
        if param.is_require_grad() {
            self.trainable += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The comparison is only fair if both LoRA variants train the same parameters: Burn's
    /// `apply_lora` on exactly peft's sites, with the same rank.
    #[test]
    fn every_adapter_variant_trains_the_expected_parameters_and_steps() {
        let device = Device::flex().autodiff();
        let w = Workload { num_hidden_layers: 1, ..Workload::quick() };
        let mut counts = Vec::new();
        for variant in Variant::ALL {
            let mut trainer = Trainer::new(variant, &w, &device).expect("builds");
            trainer.materialize();
            let loss = trainer.step().expect("steps");
            assert!(loss.is_finite(), "{}: loss {loss}", variant.name());
            counts.push(trainer.parameters().0);
        }
        let count = |v: Variant| counts[Variant::ALL.iter().position(|x| *x == v).expect("listed")];
        assert_eq!(count(Variant::Frozen), 0, "the frozen base trains nothing");
        assert!(count(Variant::PeftLora) > 0);
        assert_eq!(count(Variant::PeftLora), count(Variant::BurnApplyLora), "peft and apply_lora train as many parameters");
        // DoRA adds one magnitude per output feature of the 7 adapted layers (one decoder layer):
        // q, o, down give `hidden`, k and v the key/value width, gate and up `intermediate`.
        let kv = w.hidden_size / w.num_attention_heads * w.num_key_value_heads;
        let outputs = 3 * w.hidden_size + 2 * kv + 2 * w.intermediate_size;
        assert_eq!(count(Variant::PeftDora), count(Variant::PeftLora) + outputs, "DoRA: LoRA plus the magnitudes");
        let n = w.num_virtual_tokens;
        assert_eq!(count(Variant::PeftPromptTuning), n * w.hidden_size, "prompt tuning: the table");
        assert_eq!(count(Variant::PeftPrefixTuning), n * w.num_hidden_layers * 2 * kv, "prefix tuning: keys and values per layer");
    }

    #[test]
    fn variant_names_round_trip() {
        for v in Variant::ALL {
            assert_eq!(Variant::from_name(v.name()).ok(), Some(v));
        }
        assert!(Variant::from_name("full").is_err());
    }
}
