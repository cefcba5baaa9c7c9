//! `adapter_config.json` from strangers: arbitrary text and mutated real files give a config or
//! a typed error (never a panic), and every config that is accepted writes back to JSON that
//! reads as the same config. `fuzz/fuzz_targets/adapter_config.rs` runs the same property for
//! millions of inputs.

#[cfg(test)] // (tidy: everything below is test code)
use super::*;
use proptest::prelude::*;

/// The Python library's files for every method (`fixtures/configs`) and a LoRA one.
const FILES: [&str; 7] = [
    include_str!("../../../../fixtures/configs/adalora/adapter_config.json"),
    include_str!("../../../../fixtures/configs/adaption_prompt/adapter_config.json"),
    include_str!("../../../../fixtures/configs/ia3/adapter_config.json"),
    include_str!("../../../../fixtures/configs/p_tuning/adapter_config.json"),
    include_str!("../../../../fixtures/configs/prefix_tuning/adapter_config.json"),
    include_str!("../../../../fixtures/configs/prompt_tuning/adapter_config.json"),
    include_str!("../../../../fixtures/cases/gpt2_lora/adapter/adapter_config.json"),
];

/// Strings a config holds, so that mutations reach past "not a valid variant".
const WORDS: [&str; 12] = ["LORA", "IA3", "ADALORA", "PROMPT_TUNING", "none", "all", "lora_only", "CAUSAL_LM", "all-linear", "q_proj", "gaussian", ""];

/// Any JSON value: scalars of every kind (huge, negative, fractional numbers included), the
/// config's own words, and small arrays and objects of them.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        (0usize..WORDS.len()).prop_map(|i| Value::from(WORDS[i])),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What reading a hostile file may give: a config, or an error a caller can match on.
fn check(text: &str) -> std::result::Result<(), TestCaseError> {
    match PeftConfig::from_json_str(text, Path::new("adapter_config.json")) {
        Ok(config) => {
            let back = PeftConfig::from_json_str(&config.to_json_string(), Path::new("written.json"));
            prop_assert_eq!(back.ok(), Some(config), "an accepted config must read back as written");
        }
        Err(Error::Json { .. } | Error::Format { .. } | Error::InvalidConfig { .. } | Error::Unsupported { .. }) => {}
        Err(other) => prop_assert!(false, "unexpected error kind: {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_is_a_config_or_a_typed_error(text in "\\PC{0,64}", value in json_value()) {
        check(&text)?;
        check(&value.to_string())?;
    }

    #[test]
    fn mutated_files_are_configs_or_typed_errors(
        file in 0..FILES.len(), edits in proptest::collection::vec((any::<prop::sample::Index>(), json_value(), any::<bool>()), 1..4),
    ) {
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(FILES[file]) else { panic!("fixture {file} is a JSON object") };
        for (at, value, remove) in edits {
            let key = map.keys().nth(at.index(map.len().max(1))).cloned().unwrap_or_else(|| "r".into());
            if remove { map.remove(&key); } else { map.insert(key, value); }
        }
        check(&Value::Object(map).to_string())?;
    }
}

#[test]
fn every_fixture_reads_and_round_trips() {
    for text in FILES {
        let config = PeftConfig::from_json_str(text, Path::new("adapter_config.json")).expect("the Python library's files read");
        check(text).expect("round trip");
        assert!(config.peft_type().is_some());
    }
}
