//! The Llama family against transformers (fixtures made by `fixtures/generate.py`): logits of
//! llama, llama with llama3 RoPE scaling, SmolLM-style tied embeddings, Mistral and Qwen2;
//! cached generation against full forwards; loss and gradients; typed loading errors.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{AdapterSites, Error, SiteKind};
use peft_io::tensors::{TensorMap, read_safetensors, write_safetensors};
use peft_models::llama::{KvCache, LayerKv, LlamaConfig, LlamaForCausalLM};
use crate::common::fixtures;

/// How far from the Python reference outputs may lie on the run's backend (one table:
/// `Backend::tolerance`, per backend and dtype).
static TOLERANCE: std::sync::LazyLock<f32> = std::sync::LazyLock::new(|| peft_core::backend::tolerance(burn::tensor::DType::F32));

/// Every test picks its device here.
fn device() -> Device {
    peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in")
}

fn load(model: &str, device: &Device) -> LlamaForCausalLM {
    LlamaForCausalLM::from_pretrained(fixtures().join("models").join(model), device).expect("fixture model loads")
}

fn expected(case: &str) -> TensorMap {
    read_safetensors(&fixtures().join("cases").join(case).join("expected.safetensors")).expect("fixture case")
}

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32")
}

fn ints<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().try_into_vec::<i64>().expect("i64")
}

fn ids(rows: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(rows.concat(), [rows.len(), rows[0].len()]), device)
}

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    floats(a).iter().zip(floats(b)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Max |ours - transformers'| of the base logits over positions whose attention_mask is 1.
fn base_logits_diff(model_name: &str, case: &str) -> f32 {
    let device = device();
    let model = load(model_name, &device);
    let expected = expected(case);
    let input_ids = Tensor::<2, Int>::from_data(expected["input_ids"].clone(), &device);
    let [batch, len] = input_ids.dims();
    let mask = match expected.get("attention_mask") {
        Some(m) => Tensor::<2, Int>::from_data(m.clone(), &device),
        None => Tensor::ones([batch, len], &device),
    };
    let ours = floats(model.forward(input_ids, Some(mask.clone())));
    let theirs = expected["base"].clone().convert::<f32>().try_into_vec::<f32>().expect("f32");
    assert_eq!(ours.len(), theirs.len(), "logits shape");
    let vocab = ours.len() / (batch * len);
    let mut worst = 0f32;
    for (position, real) in ints(mask).iter().enumerate() {
        if *real == 1 {
            let span = position * vocab..(position + 1) * vocab;
            for (a, b) in ours[span.clone()].iter().zip(&theirs[span]) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    println!("{model_name} / {case}: max abs diff {worst:e}");
    worst
}

#[test]
fn llama_matches_transformers() {
    assert!(base_logits_diff("llama", "llama_qv") < *TOLERANCE);
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    assert!(base_logits_diff("llama_rope_scaled", "llama_rope_scaled_qv") < *TOLERANCE);
}

#[test]
fn tied_embeddings_match_transformers() {
    assert!(base_logits_diff("smollm", "smollm_qv") < *TOLERANCE);
    let model = load("smollm", &device());
    let table = model.model.embed_tokens.base_layer.weight.val();
    let head = model.lm_head.base_layer.weight.val();
    assert_eq!(max_diff(table.transpose(), head), 0.0, "lm_head is a copy of the embedding");
    assert_eq!(model.tied_weights(), vec![("lm_head.weight".to_string(), "model.embed_tokens.weight".to_string())]);
    assert!(load("llama", &device()).tied_weights().is_empty());
}

#[test]
fn mistral_matches_transformers() {
    assert!(base_logits_diff("mistral", "mistral_qv") < *TOLERANCE);
}

#[test]
fn qwen2_with_qkv_bias_matches_transformers() {
    assert!(base_logits_diff("qwen2", "qwen2_bias_all") < *TOLERANCE);
    let model = load("qwen2", &device());
    let attn = &model.model.layers[0].self_attn;
    assert!(attn.q_proj.base_layer.bias.is_some() && attn.o_proj.base_layer.bias.is_none());
}

#[test]
fn sites_have_transformers_paths() {
    let model = load("llama", &device());
    let sites = model.site_paths();
    // Per layer: seven linear layers and the attention module's output hook (LLaMA-Adapter).
    assert_eq!(sites.len(), 1 + 2 * 8 + 1);
    assert_eq!(sites[0], ("model.embed_tokens".to_string(), SiteKind::Embedding));
    assert_eq!(sites[1].0, "model.layers.0.self_attn.q_proj");
    assert_eq!(sites[5], ("model.layers.0.self_attn".to_string(), SiteKind::Attention));
    assert_eq!(sites[8].0, "model.layers.0.mlp.down_proj");
    assert_eq!(sites[17], ("lm_head".to_string(), SiteKind::Linear));
    assert_eq!(model.output_head_paths(), vec!["lm_head".to_string()]);
}

/// The fixtures' first prompt, `[1, 7]`.
fn prompt(device: &Device) -> Tensor<2, Int> {
    let expected = expected("llama_qv");
    let row: Vec<i64> = expected["input_ids"].clone().convert::<i64>().try_into_vec::<i64>().expect("i64")[..7].to_vec();
    ids(&[row], device)
}

/// Greedy decoding without a cache: a full forward per new token.
fn greedy_by_full_forwards(model: &LlamaForCausalLM, prompt: &[i64], steps: usize, device: &Device) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..steps {
        let logits = model.forward(ids(&[seq.clone()], device), None);
        let len = seq.len();
        let next = ints(logits.narrow(1, len - 1, 1).argmax(2).reshape([1]))[0];
        out.push(next as u32);
        seq.push(next);
    }
    out
}

#[test]
fn cached_generation_equals_full_forwards() {
    let device = device();
    for name in ["llama", "qwen2", "smollm"] {
        let model = load(name, &device);
        let prompt = prompt(&device);
        let generated = model.generate_greedy(prompt.clone(), 10, None);
        let reference = greedy_by_full_forwards(&model, &ints(prompt.clone()), 10, &device);
        assert_eq!(generated, vec![reference.clone()], "{name}");
        let last = model.forward(prompt, None).narrow(1, 6, 1).argmax(2).reshape([1]);
        assert_eq!(i64::from(generated[0][0]), ints(last)[0], "{name}: first token is the forward's argmax");
        // Stopping at eos: the chosen id is the third token, so exactly three come out.
        let eos = reference[2];
        let stop_at = reference.iter().position(|t| *t == eos).unwrap_or(2);
        let stopped = model.generate_greedy(ids(&[ints(self::prompt(&device))], &device), 10, Some(eos));
        assert_eq!(stopped[0], reference[..=stop_at].to_vec(), "{name}");
    }
}

#[test]
fn cached_chunks_equal_one_forward() {
    let device = device();
    let model = load("mistral", &device);
    let prompt = prompt(&device);
    let full = model.forward(prompt.clone(), None);
    let mut cache = model.new_cache();
    let first = model.forward_cached(prompt.clone().narrow(1, 0, 4), None, &mut cache);
    let second = model.forward_cached(prompt.narrow(1, 4, 3), None, &mut cache);
    assert_eq!(cache.seen(), 7);
    assert!(max_diff(Tensor::cat(vec![first, second], 1), full) < 1e-5);
}

#[test]
fn left_padding_does_not_change_generation_or_logits() {
    let device = device();
    let model = load("llama", &device);
    let row = ints(prompt(&device));
    let short: Vec<i64> = row[2..].to_vec();
    let alone = model.generate_greedy(ids(std::slice::from_ref(&short), &device), 6, None);
    let padded = ids(&[row.clone(), [vec![0, 0], short.clone()].concat()], &device);
    let mask = ids(&[vec![1; 7], vec![0, 0, 1, 1, 1, 1, 1]], &device);
    let both = model.generate_greedy_masked(padded.clone(), mask.clone(), 6, None);
    assert_eq!(both[1], alone[0]);
    assert_eq!(both[0], model.generate_greedy(ids(&[row], &device), 6, None)[0]);
    let logits_padded = model.forward(padded, Some(mask)).narrow(0, 1, 1).narrow(1, 2, 5);
    let logits_alone = model.forward(ids(&[short], &device), None);
    assert!(max_diff(logits_padded, logits_alone) < 1e-4);
}

#[test]
fn prefix_cache_shifts_positions_and_is_attended() {
    let device = device();
    let model = load("llama", &device);
    let config = model.config().clone();
    let (kv, d) = (config.num_key_value_heads(), config.head_dim());
    let prompt = prompt(&device);
    // A prefix of three zero keys and values: scores 0, so it only dilutes attention.
    let zeros = || Tensor::<4>::zeros([1, kv, 3, d], &device);
    let layers = (0..config.num_hidden_layers).map(|_| LayerKv { key: zeros(), value: zeros() }).collect();
    let mut cache = KvCache::from_prefix(layers, None);
    let with_prefix = model.forward_cached(prompt.clone(), None, &mut cache);
    assert_eq!(cache.seen(), 10);
    assert!(max_diff(with_prefix.clone(), model.forward(prompt.clone(), None)) > 1e-3, "the prefix is attended");
    // Masking the prefix out gives the plain forward back (positions shifted by 3, RoPE relative).
    let layers = (0..config.num_hidden_layers).map(|_| LayerKv { key: zeros(), value: zeros() }).collect();
    let mut cache = KvCache::from_prefix(layers, Some(Tensor::zeros([1, 3], &device)));
    let masked = model.forward_cached(prompt.clone(), None, &mut cache);
    assert!(max_diff(masked, model.forward(prompt, None)) < 1e-4);
}

#[test]
fn loss_is_transformers_shifted_mean_and_trains() {
    let device = device().autodiff();
    let model = load("llama", &device);
    let expected = expected("llama_qv");
    let input_ids = Tensor::<2, Int>::from_data(expected["input_ids"].clone(), &device);
    let mask = Tensor::<2, Int>::from_data(expected["attention_mask"].clone(), &device);
    let labels = input_ids.clone().mask_fill(mask.clone().equal_elem(0), -100);
    let (logits, loss) = model.forward_with_loss(input_ids.clone(), Some(mask), labels);
    // By hand: -log softmax(logits[b, t])[ids[b, t + 1]] over the 6 + 4 real targets.
    let (l, targets) = (floats(logits.detach()), ints(input_ids));
    let vocab = 96;
    let mut total = 0.0f64;
    let mut count = 0;
    for b in 0..2 {
        let real = if b == 0 { 7 } else { 5 };
        for t in 0..real - 1 {
            let row = &l[(b * 7 + t) * vocab..(b * 7 + t + 1) * vocab];
            let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lse = max + row.iter().map(|x| (*x as f64 - max).exp()).sum::<f64>().ln();
            total += lse - row[targets[b * 7 + t + 1] as usize] as f64;
            count += 1;
        }
    }
    let ours = floats(loss.clone())[0] as f64;
    assert!((ours - total / count as f64).abs() < 1e-5, "{ours} vs {}", total / count as f64);
    let grads = loss.backward();
    let grad = model.model.layers[0].self_attn.q_proj.base_layer.weight.grad(&grads).expect("a gradient");
    assert!(floats(grad).iter().any(|g| *g != 0.0));
}

/// Copies a fixture model folder so a test can break it.
fn copy_model(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("models").join(name).join(file), dir.path().join(file)).expect("copy");
    }
    dir
}

#[test]
fn missing_config_is_an_io_error_naming_the_file() {
    let dir = copy_model("llama");
    std::fs::remove_file(dir.path().join("config.json")).expect("remove");
    let err = LlamaForCausalLM::from_pretrained(dir.path(), &device()).expect_err("no config");
    assert!(matches!(&err, Error::Io { path, .. } if path.ends_with("config.json")), "{err}");
    assert!(err.to_string().contains("config.json"));
}

#[test]
fn missing_weight_is_a_typed_error_naming_the_key() {
    let dir = copy_model("llama");
    let path = dir.path().join("model.safetensors");
    let mut tensors = read_safetensors(&path).expect("reads");
    tensors.shift_remove("model.norm.weight");
    write_safetensors(&path, tensors.into_iter().collect()).expect("writes");
    let err = LlamaForCausalLM::from_pretrained(dir.path(), &device()).expect_err("missing weight");
    match &err {
        Error::MissingTensor { key, file, .. } => {
            assert_eq!(key, "model.norm.weight");
            assert!(file.ends_with("model.safetensors"));
        }
        other => panic!("expected MissingTensor, got {other}"),
    }
}

#[test]
fn wrong_shapes_are_typed_errors() {
    let dir = copy_model("llama");
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).expect("read")).expect("json");
    config["vocab_size"] = 97.into();
    std::fs::write(&config_path, config.to_string()).expect("write");
    let err = LlamaForCausalLM::from_pretrained(dir.path(), &device()).expect_err("wrong vocab");
    match &err {
        Error::ShapeMismatch { path, expected, actual, .. } => {
            assert_eq!(path, "model.embed_tokens");
            assert_eq!((expected.as_slice(), actual.as_slice()), (&[97, 32][..], &[96, 32][..]));
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
    // A config that cannot be built is refused before any weight is read.
    config["vocab_size"] = 96.into();
    config["rope_parameters"]["rope_type"] = "yarn".into();
    std::fs::write(&config_path, config.to_string()).expect("write");
    let err = LlamaForCausalLM::from_pretrained(dir.path(), &device()).expect_err("yarn");
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(LlamaConfig::from_file(&config_path).is_err());
}

#[test]
fn new_model_runs_without_weights() {
    let device = device();
    let config: LlamaConfig = serde_json::from_str(
        r#"{"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 20, "tie_word_embeddings": true}"#,
    )
    .expect("config");
    config.validate().expect("valid");
    let model = LlamaForCausalLM::new(&config, &device);
    let logits = model.forward(ids(&[vec![1, 2, 3]], &device), None);
    assert_eq!(logits.dims(), [1, 3, 20]);
    assert!(floats(logits).iter().all(|x| x.is_finite()));
    assert_eq!(model.num_params(), 20 * 16 * 2 + 16 * 16 * 4 + 16 * 24 * 3 + 16 * 3);
}
