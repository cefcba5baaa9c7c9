//! A method of one's own, defined entirely in this file: an adapter that scales a layer's output
//! by a learned vector. It attaches through the same pipeline as the built-in methods, trains,
//! saves in the adapter-folder format and reloads — with no edit outside this test.

use crate::common;

use burn::module::{Module, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Tensor, TensorData};
use common::{TinyNet, device, ids, max_diff};
use peft::core::attach::{AdapterTensors, SiteAdapter, SiteInfo, SiteMethod, file_tensor};
use peft::core::{LinearAdapter, SiteKind, SiteMut};
use peft::{CustomConfig, Error, PeftConfig, PeftModel, Result, get_peft_model_with_method};

/// `y' = y * s`: one learned factor per output feature, starting at one.
#[derive(Module, Debug)]
struct Scale {
    scale: Param<Tensor<1>>,
}

impl LinearAdapter for Scale {

    fn adapt_output(&self, _x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        y * self.scale.val().unsqueeze::<3>()
    }
    fn merge(&self, w: Tensor<2>, b: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        Ok((w * self.scale.val().unsqueeze::<2>(), b.map(|b| b * self.scale.val())))
    }
    fn unmerge(&self, w: Tensor<2>, b: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        Ok((w / self.scale.val().unsqueeze::<2>(), b.map(|b| b / self.scale.val())))
    }
    fn export(&self) -> Vec<(String, TensorData)> {
        vec![("scale".into(), self.scale.val().into_data())]
    }
}

/// The method: which layers (the config's `targets`, suffix names) and what to build there.
struct ScaleMethod {
    targets: Vec<String>,
}

impl ScaleMethod {
    fn from_config(config: &PeftConfig) -> Self {
        let PeftConfig::Custom(c) = config else { panic!("a custom config") };
        let targets = c.fields.0["targets"].as_array().expect("targets").iter().filter_map(|t| t.as_str().map(String::from)).collect();
        ScaleMethod { targets }
    }
}

impl SiteMethod for ScaleMethod {
    fn selects(&self, site: &SiteInfo<'_>) -> bool {
        site.kind == SiteKind::Linear && self.targets.iter().any(|t| site.path.ends_with(t.as_str()))
    }

    fn build(&self, path: &str, site: SiteMut<'_>, tensors: Option<&AdapterTensors>) -> Result<(SiteAdapter, Vec<String>)> {
        let SiteMut::Linear(s) = site else { return Err(Error::InvalidState(format!("{path} is not linear"))) };
        let width = s.dims()[1];
        let device = s.base_layer.weight.lazy_device();
        let (scale, keys) = match tensors {
            Some(t) => {
                let (data, key) = file_tensor(t, path, "scale", &[width], "saved by another config")?;
                (Tensor::from_data(data, &device), vec![key])
            }
            None => (Tensor::ones([width], &device), Vec::new()),
        };
        Ok((SiteAdapter::linear(Scale { scale: Param::from_tensor(scale) }), keys))
    }
}

fn config() -> PeftConfig {
    PeftConfig::Custom(CustomConfig::new("TOY_SCALE").with_field("targets", serde_json::json!(["q_proj", "down"])))
}

#[test]
fn a_method_of_ones_own_attaches_trains_saves_and_reloads() {
    let device = device().autodiff();
    let base = TinyNet::new(&device);
    let before = base.forward(ids(&device));
    let config = config();
    let method = ScaleMethod::from_config(&config);
    let mut peft = get_peft_model_with_method(base.clone(), config, &method).expect("attaches");
    assert_eq!(peft.targeted_modules("default").expect("known"), ["layers.0.q_proj", "layers.0.down", "layers.1.q_proj", "layers.1.down"]);
    // Starts as the identity; only the scales train (2 * (8 + 8) factors).
    assert!(max_diff(peft.model().forward(ids(&device)), before.clone()) < 1e-6);
    assert_eq!(peft.trainable_parameters().0, 2 * (8 + 8));

    let target = Tensor::<3>::zeros(before.dims(), &device);
    let loss_of = |p: &PeftModel<TinyNet>| (p.model().forward(ids(&device)) - target.clone()).powi_scalar(2).mean();
    let first = loss_of(&peft).into_scalar::<f32>();
    let mut optim = AdamWConfig::new().init();
    for _ in 0..20 {
        let grads = GradientsParams::from_grads(loss_of(&peft).backward(), &peft);
        peft = optim.step(0.05, peft, grads);
    }
    let last = loss_of(&peft).into_scalar::<f32>();
    assert!(last < first * 0.9, "the loss falls: {first} -> {last}");
    let frozen = |m: &TinyNet| m.layers[0].q_proj.base_layer.weight.val();
    assert!(max_diff(frozen(peft.model()), frozen(&base)) == 0.0, "the base weight did not move");

    let dir = tempfile::tempdir().expect("temp dir");
    peft.save_pretrained(dir.path()).expect("saves");
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("adapter_config.json")).expect("config")).expect("json");
    assert_eq!(written["peft_type"], "TOY_SCALE");
    let tensors = peft::io::tensors::read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("weights");
    assert!(tensors.contains_key("base_model.model.layers.1.down.scale"), "{:?}", tensors.keys().collect::<Vec<_>>());

    let trained = peft.model().forward(ids(&device));
    let loaded_config = PeftConfig::from_dir(dir.path()).expect("reads");
    let reloaded = PeftModel::from_pretrained_with_method(base.clone(), dir.path(), &ScaleMethod::from_config(&loaded_config)).expect("reloads");
    assert!(max_diff(reloaded.model().forward(ids(&device)), trained.clone()) < 1e-6);
    let merged = reloaded.merge_and_unload().expect("merges");
    assert!(max_diff(merged.forward(ids(&device)), trained) < 1e-5);

    // The built-in loader does not know the method and says what to do.
    let err = PeftModel::from_pretrained(base, dir.path()).expect_err("unknown method");
    assert!(err.to_string().contains("TOY_SCALE") && err.to_string().contains("load_adapter_with_method"), "{err}");
}

/// Adds a learned vector to a self-attention module's output, and checks what the hook shows it.
#[derive(Module, Debug)]
struct Shift {
    shift: Param<Tensor<1>>,
}

impl peft::core::AttentionAdapter for Shift {
    fn adapt_output(&self, inputs: &peft::core::AttentionInputs<'_>, output: Tensor<3>) -> Tensor<3> {
        let [batch, len, _] = output.dims();
        assert_eq!(inputs.query.dims(), [batch, inputs.num_heads, len, inputs.head_dim], "rotated queries per head");
        output + self.shift.val().unsqueeze::<3>()
    }
    fn export(&self) -> Vec<(String, TensorData)> {
        vec![("shift".into(), self.shift.val().into_data())]
    }
}

struct ShiftMethod;

impl SiteMethod for ShiftMethod {
    fn selects(&self, site: &SiteInfo<'_>) -> bool {
        site.kind == SiteKind::Attention
    }
    fn build(&self, path: &str, site: SiteMut<'_>, _t: Option<&AdapterTensors>) -> Result<(SiteAdapter, Vec<String>)> {
        let SiteMut::Attention(_) = site else { return Err(Error::InvalidState(format!("{path} is not an attention module"))) };
        let device = peft::device::default_device()?;
        Ok((SiteAdapter::attention(Shift { shift: Param::from_tensor(Tensor::zeros([32], &device)) }), Vec::new()))
    }
}

#[test]
fn attention_hooks_reach_every_self_attention_of_a_llama() {
    use peft::models::llama::LlamaForCausalLM;
    let device = device();
    let base = LlamaForCausalLM::from_pretrained(common::fixtures::root().join("models/llama"), &device).expect("the tiny Llama");
    let ids = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(TensorData::new(vec![3i64, 9, 4, 1], [1, 4]), &device);
    let before = base.forward(ids.clone(), None);
    let config = PeftConfig::Custom(CustomConfig::new("TOY_SHIFT"));
    let mut peft = get_peft_model_with_method(base, config, &ShiftMethod).expect("attaches");
    let targeted = peft.targeted_modules("default").expect("known");
    assert!(!targeted.is_empty() && targeted.iter().all(|p| p.ends_with(".self_attn")), "{targeted:?}");
    // A zero shift leaves the model as it was; through PeftModel::forward too.
    let logits = peft.logits(ids.clone(), None).expect("runs").rank3().expect("LM logits");
    assert!(max_diff(logits, before.clone()) < 1e-5);
    // A non-zero shift in the first layer changes the logits.
    let layer0 = &mut peft.model_mut().model.layers[0].self_attn.hook.adapters;
    let shift = layer0.get_mut("default").and_then(|a| a.downcast_mut::<Shift>()).expect("our adapter");
    shift.shift = Param::from_tensor(Tensor::ones([32], &device));
    let shifted = peft.logits(ids, None).expect("runs").rank3().expect("LM logits");
    assert!(max_diff(shifted, before) > 1e-3);
}
