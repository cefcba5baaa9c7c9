//! Prompt tuning, prefix tuning and P-tuning on the Llama family against adapters written by the
//! Python library (`fixtures/cases/*_prompt_tuning`, `*_prefix_tuning`, `*_p_tuning`; gen_prompt.py).

use crate::common;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::cases::{TOL, masked};
use common::fixtures::{Case, max_abs_diff, root};
use peft::core::{Labels, ModelInputs};
use peft::models::llama::LlamaForCausalLM;
use peft::{GenerationConfig, PeftConfig, PeftModel, get_peft_model};

fn llama(case: &Case, device: &Device) -> LlamaForCausalLM {
    let model = case.meta["model"].as_str().expect("model");
    LlamaForCausalLM::from_pretrained(root().join(model), device).expect("model loads")
}

/// Labels as the fixtures' loss uses them: the ids, -100 on padding.
fn labels(ids: &Tensor<2, Int>, mask: &Tensor<2, Int>) -> Labels {
    Labels::Tokens(ids.clone().mask_fill(mask.clone().equal_elem(0), -100))
}

/// Loads the Python adapter, compares logits (virtual positions included) and loss, and checks
/// that saving writes the same keys, values and sizes.
fn check_against_python(name: &str) {
    let case = Case::load(name);
    let device = common::device();
    let ids = case.ints("input_ids", &device);
    let mask = case.ints("attention_mask", &device);
    let peft = PeftModel::from_pretrained(llama(&case, &device), case.adapter()).expect("loads the Python adapter");

    let out = peft.forward(ModelInputs::ids_with_mask(ids.clone(), mask.clone()).with_labels(labels(&ids, &mask))).expect("forward");
    let logits = out.logits.rank3().expect("rank 3");
    let virtual_positions = case.meta["virtual_positions"].as_u64().expect("virtual") as usize;
    assert_eq!(logits.dims(), [2, virtual_positions + 7, 96], "logits keep the virtual positions as Python does");
    let logits_mask = case.expected.get("logits_mask");
    let diff = max_abs_diff(masked(logits.into_data(), logits_mask), &masked(case.expected["adapted"].clone(), logits_mask));
    assert!(diff < *TOL, "{name}: logits differ from Python's by {diff}");
    let loss = out.loss.expect("loss").into_data();
    assert!(max_abs_diff(loss, &case.expected["loss"]) < *TOL, "{name}: loss");

    // The adapter changes the output; disabled it is the base model.
    let base = peft.model().forward(ids.clone(), Some(mask.clone())).into_data();
    let base_diff = max_abs_diff(masked(base, Some(&case.expected["attention_mask"])), &masked(case.expected["base"].clone(), Some(&case.expected["attention_mask"])));
    assert!(base_diff < *TOL, "{name}: the base model stays as it was");

    // Saving writes Python's keys, values and config sizes.
    let dir = tempfile::tempdir().expect("temp dir");
    peft.save_pretrained(dir.path()).expect("saves");
    let ours = peft::io::tensors::read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("ours");
    let theirs = peft::io::tensors::read_safetensors(&case.adapter().join("adapter_model.safetensors")).expect("theirs");
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    for (key, value) in &theirs {
        assert_eq!(max_abs_diff(ours[key].clone(), value), 0.0, "{key} round trips");
    }
    let json = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).expect("config")).expect("json")
    };
    let (mine, python) = (json(dir.path()), json(&case.adapter()));
    for key in ["peft_type", "num_virtual_tokens", "token_dim", "num_layers", "num_attention_heads", "num_transformer_submodules", "encoder_hidden_size"] {
        assert_eq!(mine.get(key), python.get(key), "{name}: config key {key}");
    }
    let reloaded = PeftModel::from_pretrained(llama(&case, &device), dir.path()).expect("reloads ours");
    let again = reloaded.logits(ids, Some(mask)).expect("forward").into_data();
    let diff = max_abs_diff(masked(again, logits_mask), &masked(case.expected["adapted"].clone(), logits_mask));
    assert!(diff < *TOL, "{name}: reloaded logits");
}

/// `get_peft_model` with the Python config (sizes left unset) gives Python's trainable line and
/// fills the sizes as Python saved them.
fn check_fresh(name: &str) {
    let case = Case::load(name);
    let device = common::device();
    let mut config = PeftConfig::from_dir(case.adapter()).expect("config");
    config.set_inference_mode(false);
    let python = config.clone();
    match &mut config {
        PeftConfig::PromptTuning(c) => c.prompt_learning = blank(&c.prompt_learning),
        PeftConfig::PTuning(c) => {
            c.prompt_learning = blank(&c.prompt_learning);
        }
        PeftConfig::PrefixTuning(c) => {
            c.prompt_learning = blank(&c.prompt_learning);
            c.encoder_hidden_size = None;
        }
        other => panic!("not a prompt config: {other:?}"),
    }
    let peft = get_peft_model(llama(&case, &device), config).expect("attaches");
    assert_eq!(peft.trainable_parameters_line(), case.meta["print_trainable_parameters"].as_str().expect("line"), "{name}");
    let filled = peft.peft_config("default").expect("config");
    assert_eq!(serde_json::to_value(filled).expect("json")["token_dim"], serde_json::to_value(&python).expect("json")["token_dim"], "{name}: token_dim");
    assert_eq!(
        serde_json::to_value(filled).expect("json")["num_attention_heads"],
        serde_json::to_value(&python).expect("json")["num_attention_heads"],
        "{name}: num_attention_heads"
    );
}

fn blank(fields: &peft::core::PromptLearningFields) -> peft::core::PromptLearningFields {
    peft::core::PromptLearningFields { num_virtual_tokens: fields.num_virtual_tokens, ..Default::default() }
}

/// Training moves only the prompt and lowers the loss; generation after the prompt starts with
/// the argmax of the forward's last logits, and cached decoding equals uncached forwards.
fn check_training_and_generation(name: &str) {
    let case = Case::load(name);
    let device = common::device().autodiff();
    let mut config = PeftConfig::from_dir(case.adapter()).expect("config");
    config.set_inference_mode(false);
    let base = llama(&case, &device);
    let mut peft = get_peft_model(base.clone(), config).expect("attaches");
    let ids = case.ints("input_ids", &device);
    let mask = case.ints("attention_mask", &device);
    let inputs = || ModelInputs::ids_with_mask(ids.clone(), mask.clone()).with_labels(labels(&ids, &mask));
    let table = |p: &PeftModel<LlamaForCausalLM>| p.model_adapters().iter().next().expect("one adapter").1.export()[0].1.clone();
    let start = table(&peft);
    let first = peft.forward(inputs()).expect("forward").loss.expect("loss").into_scalar::<f32>();
    let mut optim = AdamWConfig::new().init();
    for _ in 0..8 {
        let loss = peft.forward(inputs()).expect("forward").loss.expect("loss");
        let grads = GradientsParams::from_grads(loss.backward(), &peft);
        peft = optim.step(0.05, peft, grads);
    }
    let last = peft.forward(inputs()).expect("forward").loss.expect("loss").into_scalar::<f32>();
    assert!(last < first, "{name}: the loss falls: {first} -> {last}");
    let weight = |m: &LlamaForCausalLM| m.model.layers[0].self_attn.q_proj.base_layer.weight.val().into_data();
    assert_eq!(max_abs_diff(weight(peft.model()), &weight(&base)), 0.0, "{name}: the base did not move");
    assert!(max_abs_diff(table(&peft), &start) > 0.0, "{name}: the prompt moved");

    // Generation: the first row is unpadded.
    let row: Tensor<2, Int> = case.ints("input_ids", &device).slice([0..1, 0..7]);
    let logits = peft.logits(row.clone(), None).expect("forward").rank3().expect("rank 3");
    let [_, positions, vocab] = logits.dims();
    let last_row: Vec<f32> = logits.slice([0..1, positions - 1..positions, 0..vocab]).into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
    let argmax = last_row.iter().enumerate().fold(0, |best, (i, v)| if *v > last_row[best] { i } else { best });
    let generated = peft.generate(ModelInputs::ids(row.clone()), &GenerationConfig::greedy(4)).expect("generates");
    let tokens = &generated.tokens[0];
    assert_eq!(tokens.len(), 4);
    assert_eq!(tokens[0] as usize, argmax, "{name}: the first token is the argmax of the last logits");
    // Uncached: the whole sequence at once predicts each generated token.
    let mut all: Vec<i64> = row.into_data().convert::<i64>().try_to_vec::<i64>().expect("ids");
    all.extend(tokens[..3].iter().map(|t| i64::from(*t)));
    let n = all.len();
    let full = peft.logits(Tensor::from_data(TensorData::new(all, [1, n]), &device), None).expect("forward").rank3().expect("rank 3");
    let [_, positions, _] = full.dims();
    let picks: Vec<i64> = full.argmax(2).into_data().convert::<i64>().try_to_vec::<i64>().expect("ids");
    let uncached: Vec<u32> = picks[positions - 4..].iter().map(|t| *t as u32).collect();
    assert_eq!(&uncached, tokens, "{name}: cached decoding equals uncached forwards");
}

#[test]
fn prompt_tuning_matches_python() {
    check_against_python("llama_prompt_tuning");
    check_fresh("llama_prompt_tuning");
}

#[test]
fn prompt_tuning_trains_and_generates() {
    check_training_and_generation("llama_prompt_tuning");
}

#[test]
fn prefix_tuning_matches_python() {
    check_against_python("llama_prefix_tuning");
    check_fresh("llama_prefix_tuning");
}

#[test]
fn prefix_tuning_with_one_kv_head_matches_python() {
    check_against_python("smollm_prefix_tuning");
    check_fresh("smollm_prefix_tuning");
}

#[test]
fn prefix_tuning_trains_and_generates() {
    check_training_and_generation("llama_prefix_tuning");
}

#[test]
fn p_tuning_matches_python() {
    check_against_python("llama_p_tuning");
    check_fresh("llama_p_tuning");
}

#[test]
fn p_tuning_trains_and_generates() {
    check_training_and_generation("llama_p_tuning");
}

#[test]
fn a_table_of_the_wrong_shape_is_refused_and_nothing_is_attached() {
    let case = Case::load("llama_prompt_tuning");
    let device = common::device();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(case.adapter().join("adapter_config.json"), dir.path().join("adapter_config.json")).expect("copy");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("adapter_config.json")).expect("read")).expect("json");
    config["num_virtual_tokens"] = 5.into();
    std::fs::write(dir.path().join("adapter_config.json"), config.to_string()).expect("write");
    std::fs::copy(case.adapter().join("adapter_model.safetensors"), dir.path().join("adapter_model.safetensors")).expect("copy");
    let mut peft = get_peft_model(llama(&case, &device), peft::LoraConfig::new(2).with_target_modules(["q_proj"])).expect("lora");
    let err = peft.load_adapter(dir.path(), "prompt").expect_err("5 rows expected, 4 saved");
    assert!(err.to_string().contains("prompt_embeddings"), "{err}");
    assert_eq!(peft.adapter_names(), ["default"], "nothing attached");
}
