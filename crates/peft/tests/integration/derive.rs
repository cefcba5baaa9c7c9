//! `#[derive(AdapterSites)]` on a model of nested modules: the paths and kinds it lists, its
//! heads and default targets, and LoRA attaching where `target_modules` says.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, Relu};
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft::{LoraConfig, PeftModel, TargetModules, get_peft_model};
use peft_core::{
    AdaptedConv2d, AdaptedEmbedding, AdaptedLinear, SiteKind, SiteMut, SiteVisit,
};
// The trait and its derive, as a user of the facade imports them.
use peft::AdapterSites;

const HIDDEN: usize = 8;

/// Attention with transformers' names; the norm and the plain linear are not sites.
#[derive(Module, Debug, AdapterSites)]
struct Attention {
    q_proj: AdaptedLinear,
    v_proj: AdaptedLinear,
    norm: LayerNorm,
    not_a_site: Linear,
}

/// A block: a nested module, a renamed layer, an optional layer, an activation.
#[derive(Module, Debug, AdapterSites)]
struct Block {
    #[peft(sites)]
    self_attn: Attention,
    #[peft(rename = "mlp.down_proj")]
    down: AdaptedLinear,
    extra: Option<AdaptedLinear>,
    act: Relu,
    #[peft(skip)]
    frozen_probe: AdaptedLinear,
}

#[derive(Module, Debug, AdapterSites)]
#[peft(default_targets("q_proj", "v_proj"))]
struct Net {
    embed_tokens: AdaptedEmbedding,
    #[peft(sites)]
    layers: Vec<Block>,
    #[peft(rename = "lm_head")]
    #[peft(head)]
    head: AdaptedLinear,
    scale: f64,
}

/// A model holding a derived model whose head must show under its prefix.
#[derive(Module, Debug, AdapterSites)]
struct Wrapper {
    #[peft(sites)]
    model: Net,
    patch: AdaptedConv2d,
}

fn linear(d_in: usize, d_out: usize, device: &Device) -> AdaptedLinear {
    AdaptedLinear::new(d_in, d_out, true, device)
}

fn block(extra: bool, device: &Device) -> Block {
    Block {
        self_attn: Attention {
            q_proj: linear(HIDDEN, HIDDEN, device),
            v_proj: linear(HIDDEN, HIDDEN, device),
            norm: LayerNormConfig::new(HIDDEN).init(device),
            not_a_site: LinearConfig::new(HIDDEN, HIDDEN).init(device),
        },
        down: linear(HIDDEN, HIDDEN, device),
        extra: extra.then(|| linear(HIDDEN, HIDDEN, device)),
        act: Relu::new(),
        frozen_probe: linear(HIDDEN, HIDDEN, device),
    }
}

impl Net {
    fn new(device: &Device) -> Self {
        device.seed(3);
        let net = Net {
            embed_tokens: AdaptedEmbedding::new(16, HIDDEN, device),
            layers: vec![block(true, device), block(false, device)],
            head: linear(HIDDEN, 3, device),
            scale: 0.5,
        };
        // Burn initialises lazily: force the weights before anything else draws from the seed.
        let _ = net.forward(ids(device));
        net
    }

    /// # Shapes
    /// - `ids`: `[batch, tokens]`, output `[batch, tokens, 3]`
    fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let mut x = self.embed_tokens.forward(ids);
        for b in &self.layers {
            let attn = b.self_attn.v_proj.forward(b.self_attn.q_proj.forward(x.clone()).tanh());
            let mut mlp = b.down.forward(b.act.forward(x.clone()));
            if let Some(extra) = &b.extra {
                mlp = extra.forward(mlp);
            }
            x = x + attn + mlp * self.scale;
        }
        self.head.forward(x)
    }
}

fn ids(device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(vec![1i64, 5, 7, 2, 15, 3], [2, 3]), device)
}

fn device() -> Device {
    peft::device::default_device().expect("a backend is compiled in")
}

fn linear_paths(paths: &[&str]) -> Vec<(String, SiteKind)> {
    paths.iter().map(|p| (p.to_string(), SiteKind::Linear)).collect()
}

#[test]
fn fields_become_sites_in_declaration_order() {
    let net = Net::new(&device());
    let mut expected = vec![("embed_tokens".to_string(), SiteKind::Embedding)];
    expected.extend(linear_paths(&[
        "layers.0.self_attn.q_proj",
        "layers.0.self_attn.v_proj",
        "layers.0.mlp.down_proj",
        "layers.0.extra",
        "layers.1.self_attn.q_proj",
        "layers.1.self_attn.v_proj",
        "layers.1.mlp.down_proj",
        "lm_head",
    ]));
    assert_eq!(net.site_paths(), expected);
    assert_eq!(net.output_head_paths(), ["lm_head"]);
    assert_eq!(net.default_target_modules(), ["q_proj", "v_proj"]);
}

#[test]
fn nested_derived_models_keep_their_heads_under_the_prefix() {
    let device = device();
    let conv = burn::nn::conv::Conv2dConfig::new([3, 4], [2, 2]).init(&device);
    let wrapper = Wrapper { model: Net::new(&device), patch: AdaptedConv2d::from_conv(conv) };
    let paths = wrapper.site_paths();
    assert_eq!(paths.first().map(|(p, k)| (p.as_str(), *k)), Some(("model.embed_tokens", SiteKind::Embedding)));
    assert_eq!(paths.last().map(|(p, k)| (p.as_str(), *k)), Some(("patch", SiteKind::Conv2d)));
    assert_eq!(paths.len(), 10, "the nine of `Net` and the convolution");
    assert_eq!(wrapper.output_head_paths(), ["model.lm_head"]);
    // Defaults belong to the model passed to `get_peft_model`, not to its parts.
    assert!(wrapper.default_target_modules().is_empty());
    // The same walk through the building block, under a prefix of the caller's.
    let mut via_trait = Vec::new();
    wrapper.clone().visit_sites_at("base", &mut |p, _| via_trait.push(p.to_string()));
    assert_eq!(via_trait.len(), 10);
    assert!(via_trait.iter().all(|p| p.starts_with("base.")), "{via_trait:?}");
}

#[test]
fn lora_attaches_to_the_derived_paths() {
    let device = device();
    let base = Net::new(&device);
    let expected = base.forward(ids(&device));
    let config = LoraConfig::new(2).with_target_modules(["q_proj", "down_proj"]);
    let peft = get_peft_model(base, config).expect("attaches");
    let targeted = peft.targeted_modules("default").expect("the default adapter");
    let want = ["layers.0.self_attn.q_proj", "layers.0.mlp.down_proj", "layers.1.self_attn.q_proj", "layers.1.mlp.down_proj"];
    assert_eq!(targeted, want);
    // Attached where targeted, nowhere else.
    let mut holders = Vec::new();
    peft.model().visit_sites(&mut |p, site| {
        if site.holds("default") {
            holders.push(p.to_string());
        }
    });
    assert_eq!(holders, want);
    assert!(peft.model().layers[0].frozen_probe.adapters.is_empty(), "a skipped field is never adapted");
    // A fresh LoRA adapter is the identity.
    let out = peft.model().forward(ids(&device));
    let diff: Vec<f32> = (out - expected).abs().max().into_data().convert::<f32>().try_into_vec().expect("f32 data");
    assert!(diff[0] < 1e-6, "{diff:?}");
}

#[test]
fn all_linear_leaves_the_head_out_and_defaults_fill_empty_targets() {
    let device = device();
    let config = LoraConfig::new(2).with_target_modules(TargetModules::AllLinear);
    let peft = get_peft_model(Net::new(&device), config).expect("attaches");
    let targeted = peft.targeted_modules("default").expect("the default adapter");
    assert_eq!(targeted.len(), 7, "every linear site but lm_head: {targeted:?}");
    assert!(!targeted.iter().any(|p| p == "lm_head"), "{targeted:?}");

    let peft = get_peft_model(Net::new(&device), LoraConfig::new(2)).expect("attaches with the defaults");
    let targeted = peft.targeted_modules("default").expect("the default adapter");
    assert_eq!(targeted, ["layers.0.self_attn.q_proj", "layers.0.self_attn.v_proj", "layers.1.self_attn.q_proj", "layers.1.self_attn.v_proj"]);
}

#[test]
fn renamed_paths_are_the_keys_of_saved_adapters() {
    let device = device();
    let config = LoraConfig::new(2).with_target_modules(["lm_head", "down_proj"]);
    let peft = get_peft_model(Net::new(&device), config).expect("attaches");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    peft.save_pretrained(dir).expect("saves");
    let tensors = peft::io::tensors::read_safetensors(&dir.join("adapter_model.safetensors")).expect("reads");
    let mut keys: Vec<&str> = tensors.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "base_model.model.layers.0.mlp.down_proj.lora_A.weight",
            "base_model.model.layers.0.mlp.down_proj.lora_B.weight",
            "base_model.model.layers.1.mlp.down_proj.lora_A.weight",
            "base_model.model.layers.1.mlp.down_proj.lora_B.weight",
            "base_model.model.lm_head.lora_A.weight",
            "base_model.model.lm_head.lora_B.weight",
        ]
    );
    let loaded = PeftModel::from_pretrained(Net::new(&device), dir).expect("loads onto a fresh base");
    assert_eq!(loaded.targeted_modules("default").expect("loaded"), peft.targeted_modules("default").expect("attached"));
}

#[test]
fn a_hand_written_part_composes_with_derived_ones() {
    /// An enum the derive cannot see into, listed by hand.
    // Built once per test: its size does not matter, and Burn modules are not boxed.
    #[allow(clippy::large_enum_variant)]
    #[derive(Module, Debug)]
    enum Mixer {
        Dense(AdaptedLinear),
        Identity(Relu),
    }
    impl SiteVisit for Mixer {
        fn visit_sites_at(&mut self, prefix: &str, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
            if let Mixer::Dense(l) = self {
                l.visit_sites_at(prefix, f);
            }
        }
    }
    #[derive(Module, Debug, AdapterSites)]
    struct Model {
        #[peft(sites)]
        mixers: Vec<Mixer>,
    }
    let device = device();
    let model = Model { mixers: vec![Mixer::Identity(Relu::new()), Mixer::Dense(linear(2, 2, &device))] };
    assert_eq!(model.site_paths(), linear_paths(&["mixers.1"]));
}
