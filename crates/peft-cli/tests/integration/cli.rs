//! The `peft` command as a user runs it, on the committed fixtures.

use crate::common::{fixtures, peft};

/// Token ids of a case as the `--input-ids` text, and the expected tensor, flattened.
fn case(name: &str, key: &str) -> (String, Vec<usize>, Vec<f32>) {
    let t = peft::io::tensors::read_safetensors(&fixtures().join("cases").join(name).join("expected.safetensors")).expect("case");
    let ids: Vec<i64> = t["input_ids"].clone().try_into_vec().expect("ids");
    let [rows, cols] = [t["input_ids"].shape()[0], t["input_ids"].shape()[1]];
    let text = (0..rows)
        .map(|r| ids[r * cols..(r + 1) * cols].iter().map(i64::to_string).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join(";");
    let expected = t[key].clone();
    (text, expected.shape().to_vec(), expected.convert::<f32>().try_into_vec().expect("f32"))
}

fn logits_json(out: &std::process::Output) -> (Vec<usize>, Vec<f32>) {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let shape = json["shape"].as_array().expect("shape").iter().map(|v| v.as_u64().expect("dim") as usize).collect();
    let logits = json["logits"].as_array().expect("logits").iter().map(|v| v.as_f64().expect("float") as f32).collect();
    (shape, logits)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn logits_with_a_python_adapter_match_python() {
    let (ids, shape, expected) = case("bert_seq_cls", "adapted");
    let model = fixtures().join("models/bert");
    let adapter = fixtures().join("cases/bert_seq_cls/adapter");
    // The fixture's second row ends in padding its mask hides; the command sees all ids, so
    // only the first row is compared with Python.
    let out = peft(&["logits", "--model", model.to_str().expect("utf-8"), "--adapter", adapter.to_str().expect("utf-8"), "--input-ids", &ids]);
    let (got_shape, got) = logits_json(&out);
    assert_eq!(got_shape, shape);
    assert!(max_diff(&got[..3], &expected[..3]) < 1e-4, "{got:?} vs {expected:?}");
    let merged = peft(&["logits", "--merge", "--model", model.to_str().expect("utf-8"), "--adapter", adapter.to_str().expect("utf-8"), "--input-ids", &ids]);
    let (_, got_merged) = logits_json(&merged);
    assert!(max_diff(&got_merged, &got) < 1e-4, "merging changes nothing");
}

#[test]
fn logits_of_a_causal_lm() {
    let (ids, shape, expected) = case("llama_qv", "adapted");
    let first_row = ids.split(';').next().expect("a row").to_string();
    let model = fixtures().join("models/llama");
    let adapter = fixtures().join("cases/llama_qv/adapter");
    let out = peft(&["logits", "--model", model.to_str().expect("utf-8"), "--adapter", adapter.to_str().expect("utf-8"), "--input-ids", &first_row]);
    let (got_shape, got) = logits_json(&out);
    assert_eq!(got_shape, vec![1, shape[1], shape[2]]);
    assert!(max_diff(&got, &expected[..got.len()]) < 1e-4);
}

#[test]
fn inspect_describes_a_python_adapter() {
    let adapter = fixtures().join("cases/llama_qv/adapter");
    let out = peft(&["inspect", "--json", adapter.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["method"], "LORA");
    assert_eq!(json["task_type"], "CAUSAL_LM");
    assert_eq!(json["ranks"], serde_json::json!([4]));
    assert_eq!(json["targeted_modules"].as_array().expect("list").len(), 4);
    assert_eq!(json["dtypes"], serde_json::json!(["F32"]));
}

#[test]
fn user_errors_are_one_line_and_fail() {
    let out = peft(&["logits", "--model", "/nonexistent", "--input-ids", "1,2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("config.json"), "{err}");
    let out = peft(&["logits", "--model", "/nonexistent", "--input-ids", "1,x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("5,6,7"), "says how to write ids");
}

/// Runs `args`, which must fail with one line on stderr (no panic, no cause printed twice)
/// containing every one of `needles`.
fn fails_with(args: &[&str], needles: &[&str]) {
    let out = peft(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{args:?} should say `{needle}`: {err}");
        assert!(err.matches(needle).count() == 1 || needle.len() < 12, "{args:?} repeats `{needle}`: {err}");
    }
}

#[test]
fn bad_inputs_are_one_line_errors_not_panics() {
    let gpt2 = fixtures().join("models/gpt2");
    let gpt2 = gpt2.to_str().expect("utf-8");
    // Past the vocabulary (96) and past the position table (64) of the tiny GPT-2.
    fails_with(&["logits", "--model", gpt2, "--input-ids", "1,2,99999"], &["99999", "vocabulary"]);
    let long = vec!["1"; 500].join(",");
    fails_with(&["logits", "--model", gpt2, "--input-ids", &long], &["500 positions", "64"]);
    // A missing folder says its cause once.
    fails_with(&["logits", "--model", "/nonexistent/model", "--input-ids", "1,2"], &["No such file or directory"]);
    // A BERT classifier's adapter on a GPT-2 base.
    let bert_adapter = fixtures().join("cases/bert_seq_cls/adapter");
    fails_with(&["logits", "--model", gpt2, "--adapter", bert_adapter.to_str().expect("utf-8"), "--input-ids", "1,2"], &["another model"]);
}
