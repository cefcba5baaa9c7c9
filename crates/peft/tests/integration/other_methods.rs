//! The methods beside LoRA on models of your own: the Python library's IA3 folder loads and saves
//! back; methods that need the model's cooperation (an attention hook, the model's sizes) say
//! which models have it when a model lacks it.

use crate::common;

use std::path::Path;

use burn::module::Module;
use common::{TinyNet, device};
use peft::core::{AdaptedLinear, AdapterSites, SiteMut};
use peft::core::{AdaptionPromptConfig, Ia3Config, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig};
use peft::{Error, PeftConfig, PeftModel, get_peft_model};

/// The three-Linear toy `fixtures/configs/ia3` was saved from.
#[derive(Module, Debug)]
struct Three {
    q_proj: AdaptedLinear,
    v_proj: AdaptedLinear,
    down_proj: AdaptedLinear,
}

impl AdapterSites for Three {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f("q_proj", SiteMut::Linear(&mut self.q_proj));
        f("v_proj", SiteMut::Linear(&mut self.v_proj));
        f("down_proj", SiteMut::Linear(&mut self.down_proj));
    }
}

fn fixture(method: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/configs").join(method)
}

#[test]
fn a_python_ia3_adapter_loads_and_adapts_every_target() {
    let device = device();
    // The folder Python saved from a three-Linear toy: q_proj, v_proj (outputs scaled) and
    // down_proj (feed-forward, input scaled); TinyNet has q_proj and v_proj of the same width.
    let config = PeftConfig::from_dir(fixture("ia3")).expect("reads");
    let PeftConfig::Ia3(ia3) = &config else { panic!("an IA3 config") };
    assert!(ia3.is_feedforward("layers.0.down_proj") && !ia3.is_feedforward("layers.0.q_proj"));
    // On TinyNet the file's keys (`q_proj.ia3_l` at the root) name no site: the adapter was
    // made for another model.
    let Err(e) = PeftModel::from_pretrained(TinyNet::new(&device), fixture("ia3")) else {
        panic!("the toy's module paths are not TinyNet's")
    };
    assert!(matches!(e, Error::AdapterForAnotherModel { unmatched: 3, total: 3, .. }), "{e:?}");
    // On the toy it was saved from, it loads and saves back the same tensors.
    let three = Three { q_proj: AdaptedLinear::new(8, 8, true, &device), v_proj: AdaptedLinear::new(8, 8, true, &device), down_proj: AdaptedLinear::new(8, 8, true, &device) };
    let loaded = PeftModel::from_pretrained(three, fixture("ia3")).expect("loads the Python IA3 adapter");
    let dir = tempfile::tempdir().expect("temp dir");
    loaded.save_pretrained(dir.path()).expect("saves");
    let read = |d: &Path| peft::io::tensors::read_safetensors(&d.join("adapter_model.safetensors")).expect("reads");
    assert_eq!(read(dir.path()), read(&fixture("ia3")), "the same keys, shapes and values");

    // A LoRA model takes an IA3 adapter beside its LoRA one.
    let mut peft = get_peft_model(TinyNet::new(&device), peft::LoraConfig::new(2).with_target_modules(["q_proj"])).expect("LoRA attaches");
    peft.add_adapter("ia3", Ia3Config::new(["q_proj", "down"]).with_feedforward_modules(["down"])).expect("IA3 attaches");
    assert_eq!(peft.active_adapters(), ["ia3"]);
    let (trainable, _) = peft.trainable_parameters();
    assert_eq!(trainable, 2 * (8 + 16), "q_proj's 8 outputs and down's 16 inputs in two blocks");
}

#[test]
fn methods_that_need_model_hooks_name_the_models_that_have_them() {
    let device = device();
    // LLaMA-Adapter is built, and says which models take it (TinyNet has no attention hook).
    let Err(e) = get_peft_model(TinyNet::new(&device), AdaptionPromptConfig::new(4, 1)) else { panic!("TinyNet has no attention") };
    assert!(matches!(e, Error::Unsupported { .. }) && e.to_string().contains("Llama family"), "{e}");
    // The prompt methods are built, and say which models take them.
    let prompts: [PeftConfig; 3] = [PromptTuningConfig::new(4).into(), PromptEncoderConfig::new(4).into(), PrefixTuningConfig::new(4).into()];
    for config in prompts {
        let Err(e) = get_peft_model(TinyNet::new(&device), config) else { panic!("TinyNet gives no sizes") };
        assert!(matches!(e, Error::Unsupported { .. }) && e.to_string().contains("Llama, GPT-2, BLOOM, BERT, RoBERTa and T5"), "{e}");
    }
}
