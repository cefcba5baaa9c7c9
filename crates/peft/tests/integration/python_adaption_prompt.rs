//! LLaMA-Adapter (ADAPTION_PROMPT) against adapters written by the Python library
//! (`fixtures/cases/*_adaption_prompt`, `fixtures/gen_adaption_prompt.py`): llama (2 key/value
//! heads of 4, the top layer adapted), smollm (1 key/value head, tied embeddings, both layers) and
//! GPT-2 (fused `c_attn`, no output projection on the prompt's attention).

use crate::common;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::cases::{assert_close, assert_loss_and_gradients, masked};
use common::fixtures::{Case, max_abs_diff, root};
use peft::core::{AdaptionPromptConfig, Labels, ModelInputs};
use peft::models::auto::AutoModel;
use peft::models::llama::LlamaForCausalLM;
use peft::{Error, GenerationConfig, PeftConfig, PeftModel, TaskModel, get_peft_model};

const CASES: [&str; 3] = ["llama_adaption_prompt", "smollm_adaption_prompt", "gpt2_adaption_prompt"];

/// The case's base model, whatever its family, with its LM head.
fn causal_lm(case: &Case, device: &Device) -> AutoModel {
    let model = case.meta["model"].as_str().expect("model");
    AutoModel::from_pretrained(root().join(model), None, device).expect("model loads")
}

/// The attention modules Python saved a prompt for (`model.layers.1.self_attn`, `transformer.h.1.attn`).
fn saved_modules(case: &Case) -> Vec<String> {
    let keys = case.meta["saved_keys"].as_array().expect("saved keys");
    keys.iter()
        .filter_map(|k| k.as_str()?.strip_prefix("base_model.model.")?.strip_suffix(".adaption_gate").map(str::to_string))
        .collect()
}

fn llama(case: &Case, device: &Device) -> LlamaForCausalLM {
    let model = case.meta["model"].as_str().expect("model");
    LlamaForCausalLM::from_pretrained(root().join(model), device).expect("model loads")
}

/// Labels as the fixtures' loss uses them: the ids, -100 on padding.
fn labels(ids: &Tensor<2, Int>, mask: &Tensor<2, Int>) -> Labels {
    Labels::Tokens(ids.clone().mask_fill(mask.clone().equal_elem(0), -100))
}

fn ints(t: Tensor<2, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().try_into_vec::<i64>().expect("i64")
}

#[test]
fn logits_loss_and_gradients_match_python() {
    for name in CASES {
        let case = Case::load(name);
        let device = common::device().autodiff();
        let ids = case.ints("input_ids", &device);
        let mask = case.ints("attention_mask", &device);
        let mut peft = PeftModel::from_pretrained(causal_lm(&case, &device), case.adapter()).expect("loads the Python adapter");
        let targeted = peft.targeted_modules("default").expect("default");
        let layers = case.meta["adapted_layers"].as_array().expect("layers").len();
        assert_eq!(targeted, saved_modules(&case), "{name}: the top adapter_layers attention modules");
        assert_eq!(targeted.len(), layers, "{name}");

        let logits = peft.logits(ids.clone(), Some(mask.clone())).expect("forward").rank3().expect("LM logits");
        assert_close(&case, "adapted", logits.into_data(), name);
        let base = peft.with_adapters_disabled(|m| m.forward_task(ModelInputs::ids_with_mask(ids.clone(), mask.clone())));
        let base = base.expect("base forward").logits.rank3().expect("LM logits");
        assert_close(&case, "base", base.into_data(), "adapters disabled");

        peft.set_trainable("default", true).expect("trainable");
        assert_eq!(peft.trainable_parameters_line(), case.meta["print_trainable_parameters"].as_str().expect("line"), "{name}");
        let out = peft.forward(ModelInputs::ids_with_mask(ids.clone(), mask.clone()).with_labels(labels(&ids, &mask))).expect("forward");
        let compared = assert_loss_and_gradients(&case, &peft, out.loss.expect("loss"));
        assert_eq!(compared, 2 * layers, "{name}: a prompt and a gate per layer");
    }
}

#[test]
fn greedy_generation_matches_python_and_cached_decoding_equals_uncached() {
    for name in CASES {
        let case = Case::load(name);
        let device = common::device();
        let peft = PeftModel::from_pretrained(causal_lm(&case, &device), case.adapter()).expect("loads");
        let ids = case.ints("gen.input_ids", &device);
        let mask = case.ints("gen.attention_mask", &device);
        let config: GenerationConfig = serde_json::from_value(case.meta["generation"].clone()).expect("generation kwargs");
        let out = peft.generate(ModelInputs::ids_with_mask(ids.clone(), mask.clone()), &config).expect("generates");
        let (got, shape) = out.padded();
        let want = &case.expected["generated"];
        assert_eq!(shape.to_vec(), want.shape().to_vec(), "{name}: {:?}", out.tokens);
        assert_eq!(got, want.clone().convert::<i64>().try_into_vec::<i64>().expect("i64"), "{name}: Python's greedy tokens");

        // Uncached: for each row alone, without its padding, one forward over prompt + new tokens
        // predicts every new token. (Alone, because the adapter's queries carry absolute rotary
        // positions while the prompt's keys carry none: a padded row must be positioned as
        // generation positions it, from the attention mask.)
        let steps = shape[1];
        let prompts = ints(ids.clone());
        let masks = ints(mask.clone());
        let width = ids.dims()[1];
        for row in 0..shape[0] {
            let mut tokens: Vec<i64> = (0..width).filter(|i| masks[row * width + i] == 1).map(|i| prompts[row * width + i]).collect();
            let prompt_len = tokens.len();
            // After eos a row is filled with the pad id: nothing more to predict.
            let new: Vec<i64> = got[row * steps..(row + 1) * steps].iter().copied().take_while(|t| *t != 95).collect();
            tokens.extend(&new);
            let n = tokens.len();
            let alone = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, n]), &device);
            let logits = peft.logits(alone, None).expect("forward").rank3().expect("LM logits");
            let picks = ints(logits.argmax(2).reshape([1, n]));
            assert_eq!(&picks[prompt_len - 1..n - 1], new.as_slice(), "{name}: row {row}: cached decoding equals the uncached forward");
        }
    }
}

#[test]
fn a_fresh_adapter_starts_as_the_base_and_trains() {
    let case = Case::load("llama_adaption_prompt");
    let device = common::device().autodiff();
    let base = llama(&case, &device);
    let ids = case.ints("input_ids", &device);
    let mask = case.ints("attention_mask", &device);
    let config = AdaptionPromptConfig::new(4, 2).with_task_type(peft::TaskType::CausalLm);
    let mut peft = get_peft_model(base.clone(), config).expect("attaches");
    // Python fills the attention module's name and writes it.
    let PeftConfig::AdaptionPrompt(filled) = peft.peft_config("default").expect("config") else { panic!("an adaption-prompt config") };
    assert_eq!(filled.target_modules.as_deref(), Some("self_attn"));
    // 2 layers x (4 x 32 prompt + 1 gate).
    assert_eq!(peft.trainable_parameters().0, 2 * (4 * 32 + 1));

    let before = base.forward(ids.clone(), Some(mask.clone()));
    let start = peft.logits(ids.clone(), Some(mask.clone())).expect("forward").rank3().expect("logits");
    let diff = max_abs_diff(masked(start.into_data(), Some(&case.expected["attention_mask"])), &masked(before.clone().into_data(), Some(&case.expected["attention_mask"])));
    assert!(diff < 1e-5, "zero gates: the base model's output ({diff})");

    let inputs = || ModelInputs::ids_with_mask(ids.clone(), mask.clone()).with_labels(labels(&ids, &mask));
    let first = peft.forward(inputs()).expect("forward").loss.expect("loss").into_scalar::<f32>();
    let mut optim = AdamWConfig::new().init();
    for _ in 0..6 {
        let loss = peft.forward(inputs()).expect("forward").loss.expect("loss");
        let grads = GradientsParams::from_grads(loss.backward(), &peft);
        peft = optim.step(0.05, peft, grads);
    }
    let last = peft.forward(inputs()).expect("forward").loss.expect("loss").into_scalar::<f32>();
    assert!(last < first, "the loss falls: {first} -> {last}");
    let after = peft.logits(ids.clone(), Some(mask.clone())).expect("forward").rank3().expect("logits");
    assert!(max_abs_diff(after.clone().into_data(), &before.into_data()) > 1e-3, "the trained gates open");
    let weight = |m: &LlamaForCausalLM| m.model.layers[1].self_attn.k_proj.base_layer.weight.val().into_data();
    assert_eq!(max_abs_diff(weight(peft.model()), &weight(&base)), 0.0, "the base did not move");

    // Save -> load gives the same outputs; the file has Python's keys.
    let dir = tempfile::tempdir().expect("temp dir");
    peft.save_pretrained(dir.path()).expect("saves");
    let saved = peft::io::tensors::read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("weights");
    let mut keys: Vec<&String> = saved.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "base_model.model.model.layers.0.self_attn.adaption_gate",
            "base_model.model.model.layers.0.self_attn.adaption_prompt",
            "base_model.model.model.layers.1.self_attn.adaption_gate",
            "base_model.model.model.layers.1.self_attn.adaption_prompt"
        ]
    );
    let reloaded = PeftModel::from_pretrained(base.valid(), dir.path()).expect("reloads");
    let again = reloaded.logits(ids.inner(), Some(mask.inner())).expect("forward").rank3().expect("logits");
    assert!(max_abs_diff(again.into_data(), &after.into_data()) < 1e-5, "reloaded outputs");
}

#[test]
fn saving_writes_what_python_wrote() {
    for name in CASES {
        let case = Case::load(name);
        let device = common::device();
        let peft = PeftModel::from_pretrained(causal_lm(&case, &device), case.adapter()).expect("loads");
        let dir = tempfile::tempdir().expect("temp dir");
        peft.save_pretrained(dir.path()).expect("saves");
        let ours = peft::io::tensors::read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("ours");
        let theirs = peft::io::tensors::read_safetensors(&case.adapter().join("adapter_model.safetensors")).expect("theirs");
        assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "{name}");
        for (key, value) in &theirs {
            assert_eq!(max_abs_diff(ours[key].clone(), value), 0.0, "{key} round trips");
        }
        let json = |dir: &std::path::Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).expect("config")).expect("json")
        };
        let (mine, python) = (json(dir.path()), json(&case.adapter()));
        for key in ["peft_type", "target_modules", "adapter_len", "adapter_layers", "task_type", "inference_mode"] {
            assert_eq!(mine.get(key), python.get(key), "{name}: config key {key}");
        }
    }
}

#[test]
fn unsupported_uses_are_typed_errors() {
    let case = Case::load("llama_adaption_prompt");
    let device = common::device();
    let mut peft = PeftModel::from_pretrained(llama(&case, &device), case.adapter()).expect("loads");
    peft.load_adapter(case.adapter(), "other").expect("a second one loads, inactive");
    assert_eq!(peft.active_adapters(), ["default"]);
    let e = peft.set_adapters(&["default", "other"]).expect_err("two at once");
    assert!(matches!(e, Error::InvalidState(_)) && e.to_string().contains("one at a time"), "{e}");
    assert_eq!(peft.active_adapters(), ["default"], "nothing changed");
    let e = peft.set_batch_adapters(Some(&["default", "other"])).expect_err("no mixed batches");
    assert!(matches!(e, Error::InvalidState(_)), "{e}");

    let e = peft.merge_and_unload().expect_err("nothing to merge");
    assert!(matches!(e, Error::Unsupported { .. }) && e.to_string().contains("merging"), "{e}");

    // More layers than the model has.
    let e = get_peft_model(llama(&case, &device), AdaptionPromptConfig::new(4, 3)).expect_err("2 layers");
    assert!(matches!(e, Error::InvalidConfig { field: "adapter_layers", .. }), "{e}");
    // A model whose attention has no hook.
    let bert = peft::models::bert::BertForSequenceClassification::from_pretrained(root().join("models/bert"), &device).expect("bert");
    let e = get_peft_model(bert, AdaptionPromptConfig::new(4, 1)).expect_err("no attention hooks");
    assert!(matches!(e, Error::Unsupported { .. }) && e.to_string().contains("self-attention hook"), "{e}");

    // A file whose prompt has another length fails before anything is attached.
    let dir = tempfile::tempdir().expect("temp dir");
    for file in ["adapter_model.safetensors", "adapter_config.json"] {
        std::fs::copy(case.adapter().join(file), dir.path().join(file)).expect("copy");
    }
    let config = std::fs::read_to_string(dir.path().join("adapter_config.json")).expect("config").replace("\"adapter_len\": 4", "\"adapter_len\": 5");
    std::fs::write(dir.path().join("adapter_config.json"), config).expect("write");
    let mut peft = PeftModel::new(llama(&case, &device));
    let e = peft.load_adapter(dir.path(), "default").expect_err("wrong length");
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    assert!(peft.adapter_names().is_empty());
}
