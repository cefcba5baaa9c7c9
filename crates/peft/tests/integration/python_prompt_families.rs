//! Prompt tuning, P-tuning and prefix tuning on GPT-2, BLOOM, BERT and RoBERTa against adapters
//! written by the Python library (`fixtures/cases/{gpt2,bloom,bert,roberta}*_{prompt,p,prefix}_tuning`;
//! gen_prompt.py): outputs (virtual positions as Python returns them), losses, gradients of the
//! table and the head copy, saved files, sizes filled from the model, and for the causal LMs
//! that serving equals training (greedy generation against the forward's argmax, cached decoding
//! against uncached forwards, a left-padded row against the same row alone).

use crate::common;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::cases::{TOL, masked};
use common::fixtures::{Case, max_abs_diff, root};
use peft::core::{Labels, Logits, ModelInputs, PeftConfig, TaskModel, TaskType};
use peft::models::auto::AutoModel;
use peft::{GenerationConfig, PeftModel, get_peft_model};

fn task(case: &Case) -> TaskType {
    serde_json::from_value(case.meta["task_type"].clone()).expect("task type")
}

fn base(case: &Case, device: &Device) -> AutoModel {
    let model = case.meta["model"].as_str().expect("model");
    AutoModel::from_pretrained_for_task(root().join(model), Some(task(case)), device).expect("model loads")
}

fn ints(t: &Tensor<2, Int>) -> Vec<i64> {
    t.clone().into_data().convert::<i64>().try_to_vec::<i64>().expect("ints")
}

/// The labels the fixture's loss used for the case's task.
fn labels(case: &Case, device: &Device) -> Option<Labels> {
    let ids = case.ints("input_ids", device);
    let mask = case.ints("attention_mask", device);
    let vec1 = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v, [2]), device);
    match task(case) {
        TaskType::CausalLm => Some(Labels::Tokens(ids.mask_fill(mask.equal_elem(0), -100))),
        TaskType::Seq2SeqLm => Some(Labels::Tokens(case.ints("labels", device))),
        TaskType::SeqCls => Some(Labels::Sequence(vec1(vec![0, 2]))),
        TaskType::QuestionAns => Some(Labels::Spans { start: vec1(vec![1, 3]), end: vec1(vec![2, 4]) }),
        TaskType::TokenCls => {
            let classes: Vec<i64> = ints(&ids).iter().zip(ints(&mask)).map(|(id, m)| if m == 0 { -100 } else { id % 3 }).collect();
            Some(Labels::Tokens(Tensor::from_data(TensorData::new(classes, ids.dims()), device)))
        }
        _ => None,
    }
}

fn inputs(case: &Case, device: &Device) -> ModelInputs {
    let inputs = ModelInputs::ids_with_mask(case.ints("input_ids", device), case.ints("attention_mask", device));
    match labels(case, device) {
        Some(l) => inputs.with_labels(l),
        None => inputs,
    }
}

/// Output values, padded positions zeroed where the output has positions.
fn compared(logits: Logits, mask: &TensorData) -> TensorData {
    match logits {
        Logits::Rank3(t) => masked(t.into_data(), Some(mask)),
        other => other.into_data(),
    }
}

/// Loads the Python adapter: outputs, loss, the base untouched, and saving writes Python's file.
fn check_against_python(name: &str) {
    let case = Case::load(name);
    let device = common::device();
    let peft = PeftModel::from_pretrained(base(&case, &device), case.adapter()).expect("loads the Python adapter");
    let out = peft.forward(inputs(&case, &device)).expect("forward");
    let expected = &case.expected["adapted"];
    assert_eq!(out.logits.dims(), expected.shape().to_vec(), "{name}: output shape (virtual positions as Python returns them)");
    let logits_mask = &case.expected["logits_mask"];
    let diff = max_abs_diff(compared(out.logits, logits_mask), &masked(expected.clone(), (expected.shape().len() == 3).then_some(logits_mask)));
    assert!(diff < *TOL, "{name}: outputs differ from Python's by {diff}");
    match (out.loss, case.expected.get("loss")) {
        (Some(loss), Some(python)) => assert!(max_abs_diff(loss.into_data(), python) < *TOL, "{name}: loss"),
        (None, None) => {}
        (ours, python) => panic!("{name}: loss {ours:?} where Python has {python:?}"),
    }

    // The base model is untouched.
    let fresh = base(&case, &device).forward_task(inputs(&case, &device)).expect("base forward").logits;
    let mask = &case.expected["attention_mask"];
    let python_base = &case.expected["base"];
    let diff = max_abs_diff(compared(fresh, mask), &masked(python_base.clone(), (python_base.shape().len() == 3).then_some(mask)));
    assert!(diff < *TOL, "{name}: base outputs by {diff}");

    // Saving writes Python's keys and values.
    let dir = tempfile::tempdir().expect("temp dir");
    peft.save_pretrained(dir.path()).expect("saves");
    let ours = peft::io::tensors::read_safetensors(&dir.path().join("adapter_model.safetensors")).expect("ours");
    let theirs = peft::io::tensors::read_safetensors(&case.adapter().join("adapter_model.safetensors")).expect("theirs");
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "{name}: saved keys");
    for (key, value) in &theirs {
        assert_eq!(max_abs_diff(ours[key].clone(), value), 0.0, "{name}: {key} round trips");
    }
    let reloaded = PeftModel::from_pretrained(base(&case, &device), dir.path()).expect("reloads ours");
    let again = reloaded.forward(inputs(&case, &device)).expect("forward").logits;
    let diff = max_abs_diff(compared(again, logits_mask), &masked(expected.clone(), (expected.shape().len() == 3).then_some(logits_mask)));
    assert!(diff < *TOL, "{name}: reloaded outputs");
}

/// Switches every dropout off: the fixture's gradients were taken with every dropout at 0.
struct DropoutOff;

impl ModuleMapper for DropoutOff {
    fn map_flag(&mut self, flag: Param<burn::module::Flag>) -> Param<burn::module::Flag> {
        flag.with_value(false)
    }
}

/// The loss gradients of the loaded table and of the head copy equal Python's.
fn check_gradients(name: &str) {
    let case = Case::load(name);
    let device = common::device().autodiff();
    let mut peft = PeftModel::from_pretrained(base(&case, &device), case.adapter()).expect("loads");
    peft.set_trainable("default", true).expect("trainable");
    let peft = peft.map(&mut DropoutOff);
    let loss = peft.forward(inputs(&case, &device)).expect("forward").loss.expect("loss");
    assert!(max_abs_diff(loss.clone().into_data(), &case.expected["loss"]) < *TOL, "{name}: loss");
    let grads = GradientsParams::from_grads(loss.backward(), &peft);
    let mut compared = Vec::new();
    for (key, grad) in peft.adapter_gradients(&grads, "default").expect("grads") {
        let file_key = if key == "prompt_embeddings" { format!("grad.{key}") } else { format!("grad.base_model.{key}") };
        let expected = case.expected.get(&file_key).unwrap_or_else(|| panic!("{name}: Python has no {file_key}"));
        let diff = max_abs_diff(grad, expected);
        assert!(diff < *TOL, "{name}: {file_key} differs by {diff}");
        compared.push(file_key);
    }
    let python: Vec<&String> = case.expected.keys().filter(|k| k.starts_with("grad.")).collect();
    assert_eq!(compared.len(), python.len(), "{name}: every gradient Python gives ({python:?}) compared ({compared:?})");
}

/// `get_peft_model` with the config's sizes unset fills them as Python did and prints Python's
/// trainable line (the P-tuning MLP and the head copy counted).
fn check_fresh(name: &str) {
    let case = Case::load(name);
    let device = common::device();
    let mut config = PeftConfig::from_dir(case.adapter()).expect("config");
    config.set_inference_mode(false);
    let python = serde_json::to_value(&config).expect("json");
    let blank = |f: &peft::core::PromptLearningFields| peft::core::PromptLearningFields { num_virtual_tokens: f.num_virtual_tokens, ..Default::default() };
    match &mut config {
        PeftConfig::PromptTuning(c) => c.prompt_learning = blank(&c.prompt_learning),
        PeftConfig::PTuning(c) => c.prompt_learning = blank(&c.prompt_learning),
        PeftConfig::PrefixTuning(c) => {
            c.prompt_learning = blank(&c.prompt_learning);
            c.encoder_hidden_size = None;
        }
        other => panic!("not a prompt config: {other:?}"),
    }
    let peft = get_peft_model(base(&case, &device), config).expect("attaches");
    assert_eq!(peft.trainable_parameters_line(), case.meta["print_trainable_parameters"].as_str().expect("line"), "{name}");
    let filled = serde_json::to_value(peft.peft_config("default").expect("config")).expect("json");
    for key in ["token_dim", "num_layers", "num_attention_heads", "num_transformer_submodules", "encoder_hidden_size"] {
        assert_eq!(filled.get(key), python.get(key), "{name}: {key}");
    }
}

/// The argmax of the last position of `logits`, per row.
fn last_argmax(logits: Tensor<3>) -> Vec<u32> {
    let [batch, len, vocab] = logits.dims();
    let last = logits.slice([0..batch, len - 1..len, 0..vocab]).argmax(2).reshape([batch]);
    last.into_data().convert::<i64>().try_to_vec::<i64>().expect("ids").into_iter().map(|t| t as u32).collect()
}

/// Serving equals training on a causal LM: the first greedy token is the argmax of the forward's
/// last logits; cached decoding equals uncached forwards; a left-padded row generates what it
/// generates alone.
fn check_generation(name: &str) {
    let case = Case::load(name);
    let device = common::device();
    let peft = PeftModel::from_pretrained(base(&case, &device), case.adapter()).expect("loads");
    let ids = case.ints("input_ids", &device);
    let mask = case.ints("attention_mask", &device);
    let row = |r: usize| -> Tensor<2, Int> {
        let values: Vec<i64> = ints(&ids.clone().slice([r..r + 1, 0..7])).into_iter().zip(ints(&mask.clone().slice([r..r + 1, 0..7]))).filter(|(_, m)| *m != 0).map(|(t, _)| t).collect();
        let n = values.len();
        Tensor::from_data(TensorData::new(values, [1, n]), &device)
    };
    let config = GenerationConfig::greedy(5);
    for r in 0..2 {
        let prompt = row(r);
        let first = last_argmax(peft.logits(prompt.clone(), None).expect("forward").rank3().expect("rank 3"));
        let tokens = peft.generate(ModelInputs::ids(prompt.clone()), &config).expect("generates").tokens.remove(0);
        assert_eq!(tokens.len(), 5, "{name}");
        assert_eq!(tokens[0], first[0], "{name} row {r}: the first token is the argmax of the forward's last logits");
        // Uncached: each token is the argmax of a full forward over everything before it.
        let mut seq = ints(&prompt);
        for (step, token) in tokens.iter().enumerate() {
            let n = seq.len();
            let logits = peft.logits(Tensor::from_data(TensorData::new(seq.clone(), [1, n]), &device), None).expect("forward");
            assert_eq!(last_argmax(logits.rank3().expect("rank 3"))[0], *token, "{name} row {r} step {step}: cached = uncached");
            seq.push(i64::from(*token));
        }
    }
    // A batch padded on the left generates what each row generates alone.
    let left = case.meta["padding"].as_str() == Some("left");
    if left {
        let batch = peft.generate(ModelInputs::ids_with_mask(ids.clone(), mask.clone()), &config).expect("generates batch");
        for r in 0..2 {
            let alone = peft.generate(ModelInputs::ids(row(r)), &config).expect("generates").tokens.remove(0);
            assert_eq!(batch.tokens[r], alone, "{name} row {r}: left padding changes nothing");
        }
    }
}

/// Serving equals training on T5: the first greedy token is the argmax of the forward's logits
/// after the start token, and cached decoding equals uncached forwards (the prefix, when there is
/// one, in front of the decoder's keys every step).
fn check_seq2seq_generation(name: &str) {
    let case = Case::load(name);
    let device = common::device();
    let peft = PeftModel::from_pretrained(base(&case, &device), case.adapter()).expect("loads");
    let ids = case.ints("input_ids", &device);
    let mask = case.ints("attention_mask", &device);
    let generated = peft.generate(ModelInputs::ids_with_mask(ids.clone(), mask.clone()), &GenerationConfig::greedy(5)).expect("generates");
    for (r, tokens) in generated.tokens.iter().enumerate() {
        let mut decoder = vec![0i64]; // the decoder start token of the fixture's T5
        for (step, token) in tokens.iter().enumerate() {
            let n = decoder.len();
            let mut inputs = ModelInputs::ids_with_mask(ids.clone().slice([r..r + 1, 0..7]), mask.clone().slice([r..r + 1, 0..7]));
            inputs.decoder_input_ids = Some(Tensor::from_data(TensorData::new(decoder.clone(), [1, n]), &device));
            let logits = peft.forward(inputs).expect("forward").logits.rank3().expect("rank 3");
            assert_eq!(last_argmax(logits)[0], *token, "{name} row {r} step {step}: generated = argmax of the training forward");
            decoder.push(i64::from(*token));
        }
    }
}

/// A fresh P-tuning encoder with the LSTM reparameterization trains (the table, the two
/// bidirectional LSTM layers and the MLP all get gradients, the loss falls), and its saved table
/// reloads to the trained model's outputs.
fn check_lstm_trains(name: &str) {
    use burn::optim::AdamWConfig;
    let case = Case::load(name);
    let device = common::device().autodiff();
    let mut config = PeftConfig::from_dir(case.adapter()).expect("config");
    config.set_inference_mode(false);
    let mut peft = get_peft_model(base(&case, &device), config).expect("a fresh LSTM encoder");
    let mut optim = AdamWConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..10 {
        let loss = peft.forward(inputs(&case, &device)).expect("forward").loss.expect("labels give a loss");
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &peft);
        assert_eq!(grads.len(), trainable_tensors(&peft), "{name}: every trainable tensor gets a gradient");
        peft = optim.step(1e-2, peft, grads);
    }
    assert!(losses[9] < losses[0], "{name}: the loss falls: {losses:?}");
    let trained = peft.valid();
    let plain = device.inner();
    let dir = tempfile::tempdir().expect("temp dir");
    trained.save_pretrained(dir.path()).expect("saves");
    let reloaded = PeftModel::from_pretrained(base(&case, &plain), dir.path()).expect("reloads");
    let out = |m: &PeftModel<AutoModel>| m.forward(inputs(&case, &plain)).expect("forward").logits.into_data();
    let diff = max_abs_diff(out(&reloaded), &out(&trained));
    assert!(diff < 1e-5, "{name}: reloaded differs by {diff}");
}

/// The number of tensors that train.
fn trainable_tensors<M: Module>(model: &M) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 += usize::from(param.is_require_grad());
        }
    }
    let mut count = Count(0);
    model.visit(&mut count);
    count.0
}

macro_rules! cases {
    ($($name:ident: [$($check:ident),*];)*) => {$(
        #[test]
        fn $name() {
            $($check(stringify!($name));)*
        }
    )*};
}

cases! {
    gpt2_prompt_tuning: [check_against_python, check_gradients, check_fresh, check_generation];
    gpt2_p_tuning: [check_against_python, check_gradients, check_fresh, check_generation];
    gpt2_prefix_tuning: [check_against_python, check_gradients, check_fresh, check_generation];
    bloom_prefix_tuning: [check_against_python, check_gradients, check_fresh, check_generation];
    bloom_prompt_tuning: [check_against_python, check_gradients, check_fresh, check_generation];
    gpt2_seq_cls_prompt_tuning: [check_against_python, check_gradients, check_fresh];
    bloom_token_cls_p_tuning: [check_against_python, check_gradients, check_fresh];
    bert_seq_cls_p_tuning: [check_against_python, check_gradients, check_fresh];
    roberta_seq_cls_prompt_tuning: [check_against_python, check_gradients, check_fresh];
    bert_token_cls_prompt_tuning: [check_against_python, check_gradients, check_fresh];
    roberta_qa_p_tuning: [check_against_python, check_gradients, check_fresh];
    bert_features_prefix_tuning: [check_against_python, check_fresh];
    t5_features_prompt_tuning: [check_against_python, check_fresh];
    t5_features_p_tuning: [check_against_python, check_fresh];
    gpt2_p_tuning_lstm: [check_against_python, check_gradients, check_generation, check_fresh, check_lstm_trains];
    t5_prompt_tuning: [check_against_python, check_gradients, check_fresh, check_seq2seq_generation];
    t5_prefix_tuning: [check_against_python, check_gradients, check_fresh, check_seq2seq_generation];
}

/// Prefix tuning on a BERT head is refused, as the Python library 0.21.2 refuses it.
#[test]
fn prefix_tuning_on_bert_heads_is_refused_with_the_supported_paths() {
    let case = Case::load("bert_seq_cls_p_tuning");
    let device = common::device();
    let config = peft::core::PrefixTuningConfig::new(2).with_task_type(TaskType::SeqCls);
    let peft = get_peft_model(base(&case, &device), config).expect("attaches");
    let err = peft.forward(inputs(&case, &device)).expect_err("refused");
    assert!(err.to_string().contains("BertModel"), "{err}");
}

/// transformers' T5 encoder takes no `past_key_values`, so prefix tuning on it is refused with a
/// typed error naming the model, as the Python library's forward fails on it.
#[test]
fn prefix_tuning_on_the_t5_encoder_is_refused() {
    let case = Case::load("t5_features_prompt_tuning");
    let device = common::device();
    let config = peft::PrefixTuningConfig::new(3).with_task_type(TaskType::FeatureExtraction);
    let peft = get_peft_model(base(&case, &device), config).expect("attaches");
    let err = peft.forward(inputs(&case, &device)).expect_err("no past_key_values on the encoder");
    assert!(matches!(&err, peft::Error::Unsupported { what, .. } if what.contains("T5EncoderModel")), "{err}");
}
