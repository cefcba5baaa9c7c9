//! `peft train`, `merge`, `generate` and `logits` on every family, as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn peft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peft")).args(args).output().expect("the peft binary runs")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error line of a failed run (exactly one line, no backtrace).
fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "should fail: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

fn expected(case: &str) -> peft::io::tensors::TensorMap {
    peft::io::tensors::read_safetensors(&fixtures().join("cases").join(case).join("expected.safetensors")).expect("case")
}

fn floats(data: &peft::burn::tensor::TensorData) -> Vec<f32> {
    data.clone().convert::<f32>().try_into_vec().expect("f32")
}

fn ids_text(data: &peft::burn::tensor::TensorData, row: usize) -> String {
    let cols = data.shape()[1];
    let ids: Vec<i64> = data.clone().convert::<i64>().try_into_vec().expect("ids");
    ids[row * cols..(row + 1) * cols].iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

fn logits(out: &Output) -> (Vec<usize>, Vec<f32>) {
    let json: serde_json::Value = serde_json::from_str(&ok(out)).expect("JSON");
    let shape = json["shape"].as_array().expect("shape").iter().filter_map(|v| v.as_u64()).map(|v| v as usize).collect();
    (shape, json["logits"].as_array().expect("logits").iter().filter_map(|v| v.as_f64()).map(|v| v as f32).collect())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A word-level tokenizer: `w1` .. `w95` are ids 1..95, split on whitespace.
fn word_tokenizer(dir: &Path) -> PathBuf {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), 0.into());
    for i in 1..96 {
        vocab.insert(format!("w{i}"), i.into());
    }
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json.to_string()).expect("write tokenizer");
    path
}

#[test]
fn logits_for_seq2seq_and_image_models_match_python() {
    let e = expected("whisper_qv");
    let case = fixtures().join("cases/whisper_qv");
    let features = case.join("expected.safetensors");
    let decoder = format!("{};{}", ids_text(&e["input_ids"], 0), ids_text(&e["input_ids"], 1));
    let out = peft(&["logits", "--model", s(&fixtures().join("models/whisper")), "--adapter", s(&case.join("adapter")),
        "--input-features", s(&features), "--decoder-input-ids", &decoder]);
    let (shape, got) = logits(&out);
    assert_eq!(shape, e["adapted"].shape().to_vec());
    assert!(max_diff(&got, &floats(&e["adapted"])) < 1e-4);

    let e = expected("vit_qv");
    let case = fixtures().join("cases/vit_qv");
    let out = peft(&["logits", "--model", s(&fixtures().join("models/vit")), "--adapter", s(&case.join("adapter")),
        "--pixel-values", s(&case.join("expected.safetensors"))]);
    let (_, got) = logits(&out);
    assert!(max_diff(&got, &floats(&e["adapted"])) < 1e-4);

    let out = peft(&["logits", "--model", s(&fixtures().join("models/whisper")), "--input-ids", "1,2"]);
    assert!(one_line_error(&out).contains("--input-features"), "says which input Whisper needs");
}

#[test]
fn merge_writes_a_model_folder_with_the_merged_outputs() {
    let e = expected("gpt2_lora");
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("merged");
    let case = fixtures().join("cases/gpt2_lora");
    ok(&peft(&["merge", "--base", s(&fixtures().join("models/gpt2")), "--adapter", s(&case.join("adapter")), "--out", s(&out_dir)]));
    assert!(out_dir.join("model.safetensors").is_file() && out_dir.join("config.json").is_file());
    let keys = peft::io::tensors::read_safetensors(&out_dir.join("model.safetensors")).expect("weights");
    assert!(keys.keys().all(|k| !k.contains("lora_") && !k.contains("base_layer")), "plain transformers keys");
    let row = ids_text(&e["input_ids"], 0);
    let (shape, got) = logits(&peft(&["logits", "--model", s(&out_dir), "--input-ids", &row]));
    let width = shape[1] * shape[2];
    assert!(max_diff(&got, &floats(&e["merged"])[..width]) < 1e-4, "the merged folder gives Python's merged logits");

    let again = peft(&["merge", "--base", s(&fixtures().join("models/gpt2")), "--adapter", s(&case.join("adapter")), "--out", s(&out_dir)]);
    assert!(one_line_error(&again).contains("not empty"));
    let wrong_base = peft(&["merge", "--base", s(&fixtures().join("models/bert")), "--adapter", s(&case.join("adapter")), "--out", s(&dir.path().join("x"))]);
    let err = one_line_error(&wrong_base);
    assert!(err.contains("bert") && err.contains("causal-lm"), "names what did not fit: {err}");
    assert!(!dir.path().join("x").exists(), "a failed merge writes nothing");
}

#[test]
fn train_a_causal_lm_then_generate_with_the_adapter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = word_tokenizer(dir.path());
    let data = dir.path().join("pairs.jsonl");
    let rows: Vec<String> = (0..24).map(|i| format!(r#"{{"prompt": "w{} w{}", "completion": "w{} w{}"}}"#, 3 + i, 4 + i, 5 + i, 6 + i)).collect();
    std::fs::write(&data, rows.join("\n")).expect("write data");
    let adapter = dir.path().join("adapter");
    let out = ok(&peft(&["train", "--model", s(&fixtures().join("models/llama")), "--tokenizer", s(&tokenizer), "--data", s(&data),
        "--r", "4", "--steps", "6", "--batch-size", "4", "--lr", "0.01", "--output", s(&adapter), "--set", "use_rslora=true"]));
    assert!(out.contains("prompt/completion") && out.contains("held-out loss"), "{out}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).expect("config")).expect("json");
    assert_eq!((config["r"].as_u64(), config["use_rslora"].as_bool(), config["task_type"].as_str()), (Some(4), Some(true), Some("CAUSAL_LM")));
    assert_eq!(config["target_modules"].as_array().map(Vec::len), Some(2), "the architecture's default q_proj/v_proj");
    assert!(adapter.join("loss.png").is_file());

    let model = fixtures().join("models/llama");
    let generate = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["generate", "--model", s(&model), "--tokenizer", s(&tokenizer),
            "--adapter", s(&adapter), "--prompt", "w3 w4", "--prompt", "w10 w11 w12", "--max-new-tokens", "4", "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(&peft(&args))).expect("json")
    };
    let greedy = generate(&[]);
    assert_eq!(greedy["ids"].as_array().map(Vec::len), Some(2));
    assert_eq!(generate(&["--merge"])["ids"], greedy["ids"], "merged and unmerged adapters generate the same");
    let sampled = generate(&["--do-sample", "--seed", "3", "--top-k", "1"]);
    assert_eq!(sampled["ids"], greedy["ids"], "top-k 1 sampling is greedy");
    let beams = generate(&["--num-beams", "3"]);
    assert_eq!(beams["ids"].as_array().map(Vec::len), Some(2));
}

#[test]
fn train_a_classifier_from_csv_with_a_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = word_tokenizer(dir.path());
    let data = dir.path().join("data.csv");
    let mut csv = String::from("sentence,label\n");
    for i in 0..30 {
        csv.push_str(&format!("\"w{} w{} w{}\",{}\n", 5 + i % 7, 20 + i % 5, 40 + i % 3, if i % 2 == 0 { "pos" } else { "neg" }));
    }
    std::fs::write(&data, csv).expect("write data");
    let config = dir.path().join("lora.json");
    std::fs::write(&config, r#"{"r": 2, "lora_alpha": 4, "target_modules": ["query", "value"]}"#).expect("write config");
    let adapter = dir.path().join("adapter");
    let model = fixtures().join("models/bert");
    let base = [
        "train", "--model", s(&model), "--tokenizer", s(&tokenizer), "--data", s(&data),
        "--steps", "4", "--batch-size", "8", "--output", s(&adapter), "--config", s(&config),
    ];
    let err = one_line_error(&peft(&base));
    assert!(err.contains("`text`") && err.contains("sentence, label") && err.contains("--text-column"), "{err}");
    let mut args = base.to_vec();
    args.extend(["--text-column", "sentence"]);
    let out = ok(&peft(&args));
    assert!(out.contains("classes: neg, pos") && out.contains("held-out accuracy"), "{out}");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).expect("config")).expect("json");
    assert_eq!((saved["r"].as_u64(), saved["task_type"].as_str()), (Some(2), Some("SEQ_CLS")));
    let mut method = args.clone();
    method.extend(["--method", "ia4"]);
    assert!(one_line_error(&peft(&method)).contains("supports: lora"));
}

#[test]
fn logits_serve_prompt_methods_written_by_python() {
    let cases = [
        "llama_prompt_tuning",
        "llama_p_tuning",
        "llama_prefix_tuning",
        "gpt2_prompt_tuning",
        "gpt2_p_tuning",
        "gpt2_prefix_tuning",
        "bloom_prefix_tuning",
        "bloom_token_cls_p_tuning",
        "bert_seq_cls_p_tuning",
        "bert_token_cls_prompt_tuning",
        "roberta_qa_p_tuning",
        "bert_features_prefix_tuning",
    ];
    for case in cases {
        let e = expected(case);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases").join(case).join("case.json")).expect("case.json")).expect("json");
        let model = fixtures().join(meta["model"].as_str().expect("model"));
        let mask: Vec<i64> = e["attention_mask"].clone().convert::<i64>().try_into_vec().expect("mask");
        let ids: Vec<i64> = e["input_ids"].clone().convert::<i64>().try_into_vec().expect("ids");
        let len = e["input_ids"].shape()[1];
        // Each row's real tokens; `peft logits` right-pads the shorter row and masks it, as the fixture does.
        let rows: Vec<String> = (0..2)
            .map(|r| (0..len).filter(|&t| mask[r * len + t] == 1).map(|t| ids[r * len + t].to_string()).collect::<Vec<_>>().join(","))
            .collect();
        let adapter = fixtures().join("cases").join(case).join("adapter");
        let out = peft(&["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", &rows.join(";")]);
        let (shape, got) = logits(&out);
        // As in the Python library: per-position outputs include the virtual positions of
        // prompt tuning and P-tuning; sequence classification pools one vector per row.
        assert_eq!(shape, e["adapted"].shape().to_vec(), "{case}");
        let want = floats(&e["adapted"]);
        let worst = if shape.len() == 2 {
            max_diff(&got, &want)
        } else {
            let keep: Vec<i64> = e["logits_mask"].clone().convert::<i64>().try_into_vec().expect("logits mask");
            let width = shape[2];
            keep.iter()
                .enumerate()
                .filter(|(_, k)| **k == 1)
                .flat_map(|(p, _)| (0..width).map(move |v| p * width + v))
                .map(|i| (got[i] - want[i]).abs())
                .fold(0.0, f32::max)
        };
        assert!(worst < 1e-4, "{case}: max diff {worst}");
    }
}
