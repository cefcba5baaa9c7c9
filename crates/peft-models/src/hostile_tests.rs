//! Model files from strangers: mutated `config.json`, `tokenizer.json` and GGUF files give a
//! value or a typed error, never a panic, and what they give answers the questions a model
//! build asks of it. The `fuzz/` targets `model_config`, `tokenizer` and `gguf` run the same
//! properties for millions of inputs (and use the same seed files).

#[cfg(test)] // (tidy: everything below is test code)
use crate::auto::ModelInfo;
use crate::tokenizer::Tokenizer;
use crate::{bert, bloom, gpt2, llama, segformer, t5, vit, whisper};
use peft_core::Error;
use peft_io::gguf::GgufFile;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use std::path::Path;

const MODEL_CONFIGS: [&str; 12] = [
    include_str!("../../../fixtures/models/llama/config.json"),
    include_str!("../../../fixtures/models/llama_rope_scaled/config.json"),
    include_str!("../../../fixtures/models/qwen2/config.json"),
    include_str!("../../../fixtures/models/gpt2/config.json"),
    include_str!("../../../fixtures/models/bloom/config.json"),
    include_str!("../../../fixtures/models/bert/config.json"),
    include_str!("../../../fixtures/models/roberta/config.json"),
    include_str!("../../../fixtures/models/t5/config.json"),
    include_str!("../../../fixtures/models/whisper/config.json"),
    include_str!("../../../fixtures/models/vit/config.json"),
    include_str!("../../../fixtures/models/segformer/config.json"),
    include_str!("../../../fixtures/models/mt5/config.json"),
];

/// The fuzz seeds: one tokenizer of each model type, and a Llama GGUF with a BPE tokenizer.
const TOKENIZERS: [&str; 4] = [
    include_str!("../../../fuzz/seeds/tokenizer/wordlevel.json"),
    include_str!("../../../fuzz/seeds/tokenizer/bpe_bytelevel.json"),
    include_str!("../../../fuzz/seeds/tokenizer/wordpiece_bert.json"),
    include_str!("../../../fuzz/seeds/tokenizer/unigram.json"),
];
const GGUF: &[u8] = include_bytes!("../../../fuzz/seeds/gguf/llama_tokenizer.gguf");

/// Words these files hold, so that mutations reach past "unknown variant".
const WORDS: [&str; 14] =
    ["llama", "qwen2", "gpt2", "bert", "roberta", "t5", "whisper", "vit", "segformer", "gated-gelu", "llama3", "BPE", "ByteLevel", ""];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..8).prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        (0usize..WORDS.len()).prop_map(|i| Value::from(WORDS[i])),
        "\\PC{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces (or, with `None`, removes) the value found by walking `path` down from the root:
/// each index picks a child of an object or array, stopping early at a leaf.
fn mutate_json(root: &mut Value, path: &[Index], new: Option<Value>) {
    let mut at = root;
    for (depth, i) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        let child_key = match &*at {
            Value::Object(m) if !m.is_empty() => Some(Value::from(m.keys().nth(i.index(m.len())).cloned().unwrap_or_default())),
            Value::Array(a) if !a.is_empty() => Some(Value::from(i.index(a.len()))),
            _ => None,
        };
        let Some(key) = child_key else { break };
        if last {
            match (at, key, new) {
                (Value::Object(m), Value::String(k), Some(v)) => drop(m.insert(k, v)),
                (Value::Object(m), Value::String(k), None) => drop(m.remove(&k)),
                (Value::Array(a), Value::Number(n), Some(v)) => a[n.as_u64().unwrap_or(0) as usize] = v,
                (Value::Array(a), Value::Number(n), None) => drop(a.remove(n.as_u64().unwrap_or(0) as usize)),
                _ => {}
            }
            return;
        }
        at = match (at, key) {
            (Value::Object(m), Value::String(k)) => m.get_mut(&k).expect("the key was just listed"),
            (Value::Array(a), Value::Number(n)) => &mut a[n.as_u64().unwrap_or(0) as usize],
            _ => return,
        };
    }
}

fn mutated(text: &str, edits: &[(Vec<Index>, Option<Value>)]) -> String {
    let mut value: Value = serde_json::from_str(text).expect("seed files are JSON");
    for (path, new) in edits {
        mutate_json(&mut value, path, new.clone());
    }
    value.to_string()
}

fn edits() -> impl Strategy<Value = Vec<(Vec<Index>, Option<Value>)>> {
    proptest::collection::vec((proptest::collection::vec(any::<Index>(), 1..5), proptest::option::weighted(0.85, json_value())), 1..4)
}

fn typed(result: Result<(), Error>) -> Result<(), TestCaseError> {
    match result {
        Ok(()) | Err(Error::Json { .. } | Error::Format { .. } | Error::InvalidConfig { .. } | Error::Unsupported { .. }) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!("unexpected error kind: {other:?}"))),
    }
}

/// Every family's parse of one `config.json`, and the sizes a model build derives from it.
fn check_model_config(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new("config.json");
    typed(ModelInfo::from_json(text, path).and_then(|i| i.head(None)).map(drop))?;
    typed(llama::LlamaConfig::from_json(text, path).map(|c| drop((c.head_dim(), c.num_key_value_heads(), c.sliding_window_for_layer(1), c.rope()))))?;
    typed(gpt2::Gpt2Config::from_json(text, path).map(|c| {
        let _ = (c.head_dim(), c.inner_dim(), c.eos_token_ids());
    }))?;
    typed(bloom::BloomConfig::from_json(text, path).map(|c| drop((c.head_dim(), c.eos_token_ids()))))?;
    typed(bert::BertConfig::from_json(text, path).map(|c| {
        let _ = c.head_dim();
    }))?;
    typed(t5::T5Config::from_json(text, path).map(|c| drop((c.feed_forward(), c.num_decoder_layers(), c.num_labels()))))?;
    typed(whisper::WhisperConfig::from_json(text, path).map(|c| drop((c.input_frames(), c.eos_token_ids()))))?;
    typed(vit::ViTConfig::from_json(text, path).map(|c| {
        let _ = (c.num_patches(), c.pooler_size());
    }))?;
    typed(segformer::SegformerConfig::from_json(text, path).map(|c| {
        let _ = (0..c.num_encoder_blocks).map(|s| c.mlp_width(s)).max();
    }))
}

fn check_tokenizer(tokenizer: Result<Tokenizer, Error>) -> Result<(), TestCaseError> {
    typed(tokenizer.and_then(|t| {
        let ids = t.encode("Hello, world! 123", true)?;
        t.decode(&ids, false).map(drop)
    }))
}

fn check_gguf(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(file) = GgufFile::from_bytes(bytes, "model.gguf") else { return Ok(()) };
    typed(llama::LlamaConfig::from_gguf(&file).map(drop))?;
    check_tokenizer(Tokenizer::from_gguf_file(&file))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_model_configs_are_configs_or_typed_errors(file in 0..MODEL_CONFIGS.len(), edits in edits()) {
        check_model_config(&mutated(MODEL_CONFIGS[file], &edits))?;
    }

    #[test]
    fn arbitrary_text_is_a_model_config_or_a_typed_error(text in "\\PC{0,32}", value in json_value()) {
        check_model_config(&text)?;
        check_model_config(&value.to_string())?;
    }

    #[test]
    fn mutated_tokenizers_load_or_give_typed_errors(file in 0..TOKENIZERS.len(), edits in edits()) {
        check_tokenizer(Tokenizer::from_json(&mutated(TOKENIZERS[file], &edits), "tokenizer.json"))?;
    }

    #[test]
    fn mutated_gguf_tokenizers_and_configs_are_values_or_typed_errors(
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..6), cut in any::<Index>(), cut_it: bool,
    ) {
        let mut bytes = GGUF.to_vec();
        for (at, b) in edits {
            bytes[at.index(GGUF.len())] = b;
        }
        if cut_it {
            bytes.truncate(cut.index(GGUF.len()));
        }
        check_gguf(&bytes)?;
    }
}

#[test]
fn the_seed_files_load() {
    for text in MODEL_CONFIGS {
        let info = ModelInfo::from_json(text, Path::new("config.json")).expect("JSON");
        assert!(info.head(None).is_ok(), "{info:?}");
        check_model_config(text).expect("no panic");
    }
    for text in TOKENIZERS {
        let t = Tokenizer::from_json(text, "tokenizer.json").expect("loads");
        assert!(t.encode("Hello, world! 123", true).expect("encodes").len() > 3);
    }
    let file = GgufFile::from_bytes(GGUF, "seed.gguf").expect("parses");
    let config = llama::LlamaConfig::from_gguf(&file).expect("a Llama config");
    assert_eq!((config.hidden_size, config.num_attention_heads, config.vocab_size), (8, 2, 24));
    let t = Tokenizer::from_gguf_file(&file).expect("a BPE tokenizer");
    assert_eq!(t.encode("Hello world", true).expect("encodes"), vec![0, 17, 22]);
}
