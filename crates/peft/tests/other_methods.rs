//! The methods of the PEFT docs this build reads configs of but cannot run yet: attaching one
//! fails with an `Unsupported` error naming the method and the crate that will add it, and leaves
//! nothing half-attached.

mod common;

use std::path::Path;

use common::{TinyNet, device};
use peft::core::{AdaptionPromptConfig, Ia3Config, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig};
use peft::{Error, PeftConfig, PeftModel, PeftType, get_peft_model};

fn fixture(method: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/configs").join(method)
}

fn assert_names(e: &Error, method: PeftType, krate: &str) {
    assert!(matches!(e, Error::Unsupported { .. }), "{method}: {e:?}");
    let message = e.to_string();
    assert!(message.contains(method.as_str()), "{method}: {message}");
    assert!(message.contains(krate), "{method}: {message}");
    // The message says what this build can do instead.
    assert!(message.contains("supported: LORA, ADALORA, PROMPT_TUNING, P_TUNING, PREFIX_TUNING in this build"), "{method}: {message}");
}

#[test]
fn loading_a_python_ia3_adapter_names_ia3_and_its_crate() {
    let device = device();
    let Err(e) = PeftModel::from_pretrained(TinyNet::new(&device), fixture("ia3")) else {
        panic!("IA3 adapters cannot load in this build")
    };
    assert_names(&e, PeftType::Ia3, "peft-ia3");
    assert_eq!(
        e.to_string(),
        "`peft_type` IA3 is not supported; supported: LORA, ADALORA, PROMPT_TUNING, P_TUNING, PREFIX_TUNING in this build; IA3 is not implemented yet \
         (it is planned in crate `peft-ia3`, feature `ia3` of `peft`)"
    );

    // On a PeftModel that already holds an adapter, the failed load leaves it as it was.
    let mut peft = get_peft_model(TinyNet::new(&device), peft::LoraConfig::new(2).with_target_modules(["q_proj"])).expect("LoRA attaches");
    let e = peft.load_adapter(fixture("ia3"), "ia3").expect_err("IA3");
    assert_names(&e, PeftType::Ia3, "peft-ia3");
    assert_eq!(peft.active_adapters(), ["default"]);
}

#[test]
fn every_method_without_a_crate_names_its_crate() {
    let device = device();
    let configs: [(PeftConfig, PeftType, &str); 2] = [
        (Ia3Config::new(["q_proj", "down"]).with_feedforward_modules(["down"]).into(), PeftType::Ia3, "peft-ia3"),
        (AdaptionPromptConfig::new(4, 1).into(), PeftType::AdaptionPrompt, "peft-prompt"),
    ];
    for (config, method, krate) in configs {
        let Err(e) = get_peft_model(TinyNet::new(&device), config) else { panic!("{method} cannot attach in this build") };
        assert_names(&e, method, krate);
    }
    // The prompt methods are built, and say which models take them.
    let prompts: [PeftConfig; 3] = [PromptTuningConfig::new(4).into(), PromptEncoderConfig::new(4).into(), PrefixTuningConfig::new(4).into()];
    for config in prompts {
        let Err(e) = get_peft_model(TinyNet::new(&device), config) else { panic!("TinyNet gives no sizes") };
        assert!(matches!(e, Error::Unsupported { .. }) && e.to_string().contains("Llama family"), "{e}");
    }
}
