//! `peft train`, `merge`, `generate` and `logits` on every family, as a user runs them.

use crate::common;

use common::{fixtures, ok, one_line_error, peft, s, word_tokenizer};
use std::path::{Path, PathBuf};
use std::process::Output;

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

/// Each row's real tokens (the attention mask's ones) as `--input-ids` text: `5,6,7;8,9`.
/// `peft logits` right-pads the shorter rows and masks them, as the fixtures do.
fn real_input_ids(e: &peft::io::tensors::TensorMap) -> String {
    let mask: Vec<i64> = e["attention_mask"].clone().convert::<i64>().try_into_vec().expect("mask");
    let ids: Vec<i64> = e["input_ids"].clone().convert::<i64>().try_into_vec().expect("ids");
    let [batch, len] = [e["input_ids"].shape()[0], e["input_ids"].shape()[1]];
    (0..batch)
        .map(|r| (0..len).filter(|&t| mask[r * len + t] == 1).map(|t| ids[r * len + t].to_string()).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join(";")
}

/// The largest `|a - b|` over the positions `keep` marks 1, each position `width` values long.
fn max_diff_where(a: &[f32], b: &[f32], keep: &[i64], width: usize) -> f32 {
    assert_eq!(a.len(), b.len());
    keep.iter()
        .enumerate()
        .filter(|(_, k)| **k == 1)
        .flat_map(|(p, _)| (0..width).map(move |v| p * width + v))
        .map(|i| (a[i] - b[i]).abs())
        .fold(0.0, f32::max)
}

/// The word tokenizer and 16 prompt/completion rows of its words (`pairs.jsonl`) in `dir`.
fn word_pairs(dir: &Path) -> (PathBuf, PathBuf) {
    let tokenizer = word_tokenizer(dir);
    let data = dir.join("pairs.jsonl");
    let rows: Vec<String> = (0..16).map(|i| format!(r#"{{"prompt": "w{} w{}", "completion": "w{}"}}"#, 3 + i, 4 + i, 5 + i)).collect();
    std::fs::write(&data, rows.join("\n")).expect("write data");
    (tokenizer, data)
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
        // Each row's real tokens; `peft logits` right-pads the shorter row and masks it, as the fixture does.
        let rows = real_input_ids(&e);
        let adapter = fixtures().join("cases").join(case).join("adapter");
        let out = peft(&["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", &rows]);
        let (shape, got) = logits(&out);
        // As in the Python library: per-position outputs include the virtual positions of
        // prompt tuning and P-tuning; sequence classification pools one vector per row.
        assert_eq!(shape, e["adapted"].shape().to_vec(), "{case}");
        let want = floats(&e["adapted"]);
        let worst = if shape.len() == 2 {
            max_diff(&got, &want)
        } else {
            let keep: Vec<i64> = e["logits_mask"].clone().convert::<i64>().try_into_vec().expect("logits mask");
            max_diff_where(&got, &want, &keep, shape[2])
        };
        assert!(worst < 1e-4, "{case}: max diff {worst}");
    }
}

/// `peft logits` on a causal-LM case of the fixtures: each row's real tokens (the mask's ones) in,
/// the logits at those positions compared with the Python library's `adapted`.
fn assert_causal_logits_match(case: &str, model: &str) {
    let e = expected(case);
    let mask: Vec<i64> = e["attention_mask"].clone().convert::<i64>().try_into_vec().expect("mask");
    let adapter = fixtures().join("cases").join(case).join("adapter");
    let out = peft(&["logits", "--model", s(&fixtures().join("models").join(model)), "--adapter", s(&adapter), "--input-ids", &real_input_ids(&e)]);
    let (shape, got) = logits(&out);
    assert_eq!(shape, e["adapted"].shape().to_vec(), "{case}");
    let worst = max_diff_where(&got, &floats(&e["adapted"]), &mask, shape[2]);
    assert!(worst < 1e-4, "{case}: max diff {worst}");
}

#[test]
fn logits_serve_ia3_adapters_written_by_python_on_every_family() {
    // (case, model folder, whether the output's positions are the input's tokens)
    for (case, model, per_token) in [("ia3_llama", "llama", true), ("ia3_gpt2", "gpt2", true), ("ia3_bert_seq_cls", "bert", false), ("ia3_t5", "t5", false)] {
        let e = expected(case);
        let mask: Vec<i64> = e["attention_mask"].clone().convert::<i64>().try_into_vec().expect("mask");
        let rows = real_input_ids(&e);
        let adapter = fixtures().join("cases").join(case).join("adapter");
        let model_dir = fixtures().join("models").join(model);
        let mut args = vec!["logits", "--model", s(&model_dir), "--adapter", s(&adapter), "--input-ids", &rows];
        let decoder = if e.contains_key("decoder_input_ids") { format!("{};{}", ids_text(&e["decoder_input_ids"], 0), ids_text(&e["decoder_input_ids"], 1)) } else { String::new() };
        if !decoder.is_empty() {
            args.extend(["--decoder-input-ids", &decoder]);
        }
        let (shape, got) = logits(&peft(&args));
        assert_eq!(shape, e["adapted"].shape().to_vec(), "{case}");
        let want = floats(&e["adapted"]);
        let width = got.len() / mask.len();
        let worst = if per_token { max_diff_where(&got, &want, &mask, width) } else { max_diff(&got, &want) };
        assert!(worst < 1e-4, "{case}: max diff {worst}");
    }
}

#[test]
fn logits_serve_dora_adapters_written_by_python() {
    assert_causal_logits_match("llama_dora", "llama");
    assert_causal_logits_match("gpt2_dora", "gpt2");
}

#[test]
fn train_with_dora_writes_magnitudes_python_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tokenizer, data) = word_pairs(dir.path());
    let adapter = dir.path().join("adapter");
    ok(&peft(&["train", "--model", s(&fixtures().join("models/llama")), "--tokenizer", s(&tokenizer), "--data", s(&data),
        "--r", "2", "--steps", "2", "--batch-size", "4", "--use-dora", "--output", s(&adapter)]));
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).expect("config")).expect("json");
    assert_eq!(config["use_dora"].as_bool(), Some(true));
    let saved = peft::io::tensors::read_safetensors(&adapter.join("adapter_model.safetensors")).expect("adapter file");
    let key = "base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector";
    assert_eq!(saved.get(key).map(|t| t.shape().to_vec()), Some(vec![16]), "v_proj's magnitude, one per output feature");
}

#[test]
fn logits_serve_pissa_and_olora_adapters_written_by_python() {
    assert_causal_logits_match("llama_pissa", "llama");
    assert_causal_logits_match("llama_olora", "llama");
    assert_causal_logits_match("gpt2_pissa", "gpt2");
}

#[test]
fn train_with_pissa_saves_plain_lora_for_the_original_base() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tokenizer, data) = word_pairs(dir.path());
    let model = fixtures().join("models/llama");
    let adapter = dir.path().join("adapter");
    let out = ok(&peft(&["train", "--model", s(&model), "--tokenizer", s(&tokenizer), "--data", s(&data),
        "--r", "2", "--steps", "3", "--batch-size", "4", "--lr", "0.01", "--init-lora-weights", "pissa_niter_2", "--output", s(&adapter)]));
    assert!(out.contains("saved as plain LoRA"), "{out}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).expect("config")).expect("json");
    assert_eq!((config["r"].as_u64(), config["lora_alpha"].as_f64(), config["init_lora_weights"].as_bool()), (Some(4), Some(32.0), Some(true)));
    let saved = peft::io::tensors::read_safetensors(&adapter.join("adapter_model.safetensors")).expect("adapter file");
    let key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    assert_eq!(saved.get(key).map(|t| t.shape().to_vec()), Some(vec![4, 32]), "rank 2 trained + rank 2 start");

    let row = "3,4,5,6";
    let (_, base) = logits(&peft(&["logits", "--model", s(&model), "--input-ids", row]));
    let (_, adapted) = logits(&peft(&["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", row]));
    assert!(max_diff(&base, &adapted) > 1e-4, "the trained update shows on the unchanged base");
    let flag = peft(&["train", "--model", s(&model), "--tokenizer", s(&tokenizer), "--data", s(&data), "--method", "ia3",
        "--init-lora-weights", "olora", "--output", s(&dir.path().join("x"))]);
    assert!(one_line_error(&flag).contains("--init-lora-weights belongs to --method lora"));
}

#[test]
fn train_ia3_then_python_s_keys_are_saved() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = word_tokenizer(dir.path());
    let data = dir.path().join("texts.jsonl");
    let rows: Vec<String> = (0..16).map(|i| format!(r#"{{"text": "w{} w{} w{} w{}"}}"#, 3 + i, 4 + i, 5 + i, 6 + i)).collect();
    std::fs::write(&data, rows.join("\n")).expect("write data");
    let adapter = dir.path().join("adapter");
    let model = fixtures().join("models/llama");
    let base = ["train", "--model", s(&model), "--tokenizer", s(&tokenizer), "--data", s(&data), "--method", "ia3",
        "--steps", "3", "--batch-size", "4", "--lr", "0.05", "--output", s(&adapter)];
    let mut with_rank = base.to_vec();
    with_rank.extend(["--r", "4"]);
    assert!(one_line_error(&peft(&with_rank)).contains("--r"), "LoRA's flags are refused for IA3");
    let out = ok(&peft(&base));
    assert!(out.contains("trainable params: 192 ||"), "{out}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).expect("config")).expect("json");
    assert_eq!((config["peft_type"].as_str(), config["task_type"].as_str()), (Some("IA3"), Some("CAUSAL_LM")));
    assert_eq!(config["feedforward_modules"], serde_json::json!(["down_proj"]), "the architecture's defaults");
    // The keys and shapes Python saved for the same defaults (fixtures/cases/ia3_llama).
    let ours = peft::io::tensors::read_safetensors(&adapter.join("adapter_model.safetensors")).expect("saved");
    let python = peft::io::tensors::read_safetensors(&fixtures().join("cases/ia3_llama/adapter/adapter_model.safetensors")).expect("python");
    let shapes = |m: &peft::io::tensors::TensorMap| m.iter().map(|(k, v)| (k.clone(), v.shape().to_vec())).collect::<std::collections::BTreeMap<_, _>>();
    assert_eq!(shapes(&ours), shapes(&python));
    assert!(floats(&ours["base_model.model.model.layers.0.mlp.down_proj.ia3_l"]).iter().any(|v| (v - 1.0).abs() > 1e-4), "the vectors trained");

    // Explicit targets and feed-forward modules.
    let explicit = dir.path().join("explicit");
    let mut args = base.to_vec();
    args.extend(["--target-modules", "q_proj,up_proj", "--feedforward-modules", "up_proj"]);
    let output_at = args.iter().position(|a| *a == s(&adapter)).expect("output");
    args[output_at] = s(&explicit);
    ok(&peft(&args));
    let saved = peft::io::tensors::read_safetensors(&explicit.join("adapter_model.safetensors")).expect("saved");
    assert_eq!(saved["base_model.model.model.layers.0.mlp.up_proj.ia3_l"].shape().to_vec(), [1, 32], "up_proj's input is scaled");
    assert_eq!(saved["base_model.model.model.layers.0.self_attn.q_proj.ia3_l"].shape().to_vec(), [32, 1]);
}

#[test]
fn train_prompt_methods_on_a_causal_lm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tokenizer, data) = word_pairs(dir.path());
    let model = fixtures().join("models/llama");
    let train = |method: &str, extra: &[&str]| -> (PathBuf, String) {
        let adapter = dir.path().join(method);
        let mut args = vec!["train", "--model", s(&model), "--tokenizer", s(&tokenizer), "--data", s(&data),
            "--steps", "2", "--batch-size", "4", "--method", method, "--output", s(&adapter)];
        args.extend_from_slice(extra);
        let out = ok(&peft(&args));
        (adapter, out)
    };
    let config = |adapter: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).expect("config")).expect("json")
    };

    // Prompt tuning from a text: 5 virtual tokens of width 32 are all that trains.
    let (adapter, out) = train("prompt-tuning", &["--num-virtual-tokens", "5", "--prompt-tuning-init-text", "w7 w8"]);
    assert!(out.contains("trainable params: 160 ||"), "{out}");
    let saved = config(&adapter);
    assert_eq!((saved["peft_type"].as_str(), saved["prompt_tuning_init"].as_str()), (Some("PROMPT_TUNING"), Some("TEXT")));
    assert_eq!(saved["num_virtual_tokens"].as_u64(), Some(5));
    assert!(saved["tokenizer_name_or_path"].is_string(), "Python refuses TEXT without a tokenizer path");
    let table = peft::io::tensors::read_safetensors(&adapter.join("adapter_model.safetensors")).expect("file");
    assert_eq!(table["prompt_embeddings"].shape().to_vec(), [5, 32]);
    // `peft logits` serves it (virtual positions included, as Python returns them).
    let (shape, _) = logits(&peft(&["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", "3,4,5"]));
    assert_eq!(shape, [1, 8, 96]);

    let (adapter, _) = train("prefix-tuning", &["--num-virtual-tokens", "3", "--prefix-projection", "--encoder-hidden-size", "16"]);
    let saved = config(&adapter);
    assert_eq!((saved["prefix_projection"].as_bool(), saved["encoder_hidden_size"].as_u64()), (Some(true), Some(16)));
    let (adapter, _) = train("p-tuning", &[]);
    assert_eq!(config(&adapter)["peft_type"].as_str(), Some("P_TUNING"));

    // A flag of another method names the methods it belongs to.
    let mut wrong = vec!["train", "--model", s(&model), "--tokenizer", s(&tokenizer), "--data", s(&data), "--method", "p-tuning", "--r", "4"];
    let err = one_line_error(&peft(&wrong));
    assert!(err.contains("--r") && err.contains("lora"), "{err}");
    wrong.truncate(7);
    wrong.extend(["--method", "prompt-tuning", "--prefix-projection"]);
    assert!(one_line_error(&peft(&wrong)).contains("prefix-tuning"));
}

#[test]
fn logits_and_generate_serve_a_llama_adapter_written_by_python() {
    for (case, model) in [("llama_adaption_prompt", "llama"), ("smollm_adaption_prompt", "smollm")] {
        let e = expected(case);
        let adapter = fixtures().join("cases").join(case).join("adapter");
        let model = fixtures().join("models").join(model);
        let mask: Vec<i64> = e["attention_mask"].clone().convert::<i64>().try_into_vec().expect("mask");
        let rows = real_input_ids(&e);
        let (shape, got) = logits(&peft(&["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", &rows]));
        assert_eq!(shape, e["adapted"].shape().to_vec(), "{case}");
        let want = floats(&e["adapted"]);
        let vocab = shape[2];
        let worst = max_diff_where(&got, &want, &mask, vocab);
        assert!(worst < 1e-4, "{case}: max diff {worst}");

        // Python's greedy tokens, from text prompts through a word-level tokenizer (`wN` is id N).
        let dir = tempfile::tempdir().expect("temp dir");
        let tokenizer = word_tokenizer(dir.path());
        let gen_ids: Vec<i64> = e["gen.input_ids"].clone().convert::<i64>().try_into_vec().expect("ids");
        let gen_mask: Vec<i64> = e["gen.attention_mask"].clone().convert::<i64>().try_into_vec().expect("mask");
        let width = e["gen.input_ids"].shape()[1];
        let prompts: Vec<String> = (0..2)
            .map(|r| (0..width).filter(|&t| gen_mask[r * width + t] == 1).map(|t| format!("w{}", gen_ids[r * width + t])).collect::<Vec<_>>().join(" "))
            .collect();
        let out = ok(&peft(&["generate", "--model", s(&model), "--tokenizer", s(&tokenizer), "--adapter", s(&adapter),
            "--prompt", &prompts[0], "--prompt", &prompts[1], "--max-new-tokens", "6", "--json"]));
        let json: serde_json::Value = serde_json::from_str(&out).expect("json");
        let generated: Vec<i64> = e["generated"].clone().convert::<i64>().try_into_vec().expect("generated");
        for row in 0..2 {
            // Python fills a finished row with the pad id 95.
            let want: Vec<i64> = generated[row * 6..(row + 1) * 6].iter().copied().filter(|t| *t != 95).collect();
            let got: Vec<i64> = json["ids"][row].as_array().expect("ids").iter().filter_map(|v| v.as_i64()).collect();
            assert_eq!(got, want, "{case}: row {row}");
        }
    }
}

#[test]
fn train_a_llama_adapter_writes_python_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = word_tokenizer(dir.path());
    let data = dir.path().join("text.jsonl");
    let rows: Vec<String> = (0..20).map(|i| format!(r#"{{"text": "w{} w{} w{} w{}"}}"#, 3 + i, 4 + i, 5 + i, 6 + i)).collect();
    std::fs::write(&data, rows.join("\n")).expect("write data");
    let adapter = dir.path().join("adapter");
    let model = fixtures().join("models/llama");
    let base = ["train", "--model", s(&model), "--tokenizer", s(&tokenizer), "--data", s(&data), "--method", "llama-adapter",
        "--steps", "4", "--batch-size", "4", "--lr", "0.01", "--output", s(&adapter)];
    let err = one_line_error(&peft(&base));
    assert!(err.contains("adapter_layers"), "the layer count is required: {err}");
    let mut args = base.to_vec();
    args.extend(["--adapter-len", "3", "--adapter-layers", "1"]);
    let out = ok(&peft(&args));
    assert!(out.contains("trainable params: 97 ||") && out.contains("held-out loss"), "3 x 32 + 1 trainable: {out}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).expect("config")).expect("json");
    assert_eq!(config["peft_type"], "ADAPTION_PROMPT");
    assert_eq!((config["adapter_len"].as_u64(), config["adapter_layers"].as_u64()), (Some(3), Some(1)));
    assert_eq!(config["target_modules"], "self_attn", "Python's default, written out");
    let weights = peft::io::tensors::read_safetensors(&adapter.join("adapter_model.safetensors")).expect("weights");
    let keys: Vec<&String> = weights.keys().collect();
    assert_eq!(keys, ["base_model.model.model.layers.1.self_attn.adaption_gate", "base_model.model.model.layers.1.self_attn.adaption_prompt"]);
    assert_eq!(weights["base_model.model.model.layers.1.self_attn.adaption_prompt"].shape().to_vec(), vec![1, 3, 32]);
    let gate: Vec<f32> = floats(&weights["base_model.model.model.layers.1.self_attn.adaption_gate"]);
    assert!(gate[0] != 0.0, "training opened the gate");
    let mut lora = args.clone();
    lora.retain(|a| *a != "llama-adapter" && *a != "--method");
    assert!(one_line_error(&peft(&lora)).contains("--method llama-adapter"));
}

#[test]
fn logits_serve_adalora_adapters_written_by_python() {
    // A fresh AdaLoRA adapter, and one the allocator cut to fewer ranks (one layer to none).
    for case in ["adalora_llama", "adalora_trained"] {
        let e = expected(case);
        let mask: Vec<i64> = e["attention_mask"].clone().convert::<i64>().try_into_vec().expect("mask");
        let rows = real_input_ids(&e);
        let adapter = fixtures().join("cases").join(case).join("adapter");
        let (shape, got) = logits(&peft(&["logits", "--model", s(&fixtures().join("models/llama")), "--adapter", s(&adapter), "--input-ids", &rows]));
        assert_eq!(shape, e["adapted"].shape().to_vec(), "{case}");
        let want = floats(&e["adapted"]);
        let vocab = shape[2];
        let worst = max_diff_where(&got, &want, &mask, vocab);
        assert!(worst < 1e-4, "{case}: max diff {worst}");
    }
}

#[test]
fn train_adalora_prunes_ranks_and_saves_the_rank_pattern() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = word_tokenizer(dir.path());
    let data = dir.path().join("text.jsonl");
    let rows: Vec<String> = (0..16).map(|i| format!(r#"{{"text": "w{} w{} w{}"}}"#, 3 + i, 4 + i, 5 + i)).collect();
    std::fs::write(&data, rows.join("\n")).expect("write data");
    let adapter = dir.path().join("adapter");
    let out = ok(&peft(&["train", "--model", s(&fixtures().join("models/llama")), "--tokenizer", s(&tokenizer), "--data", s(&data),
        "--method", "adalora", "--init-r", "4", "--target-r", "2", "--steps", "6", "--batch-size", "4", "--lr", "0.01",
        "--set", "tinit=1", "--set", "tfinal=2", "--output", s(&adapter)]));
    assert!(out.contains("held-out loss"), "{out}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).expect("config")).expect("json");
    assert_eq!((config["peft_type"].as_str(), config["total_step"].as_u64(), config["init_r"].as_u64()), (Some("ADALORA"), Some(6), Some(4)));
    let pattern = config["rank_pattern"].as_object().expect("the allocator's rank_pattern");
    assert_eq!(pattern.len(), 4, "q_proj and v_proj of 2 layers");
    let kept: usize = pattern.values().map(|v| v.as_array().expect("flags").iter().filter(|b| b.as_bool() == Some(true)).count()).sum();
    assert_eq!(kept, 8, "target_r 2 on 4 layers");
    let file = peft::io::tensors::read_safetensors(&adapter.join("adapter_model.safetensors")).expect("file");
    let ranks: usize = file.iter().filter(|(k, _)| k.ends_with("lora_E")).map(|(_, v)| v.shape()[0]).sum();
    assert_eq!(ranks, 8, "the file holds the kept ranks only");
    // The pruned adapter serves.
    let (shape, _) = logits(&peft(&["logits", "--model", s(&fixtures().join("models/llama")), "--adapter", s(&adapter), "--input-ids", "5,6,7"]));
    assert_eq!(shape, [1, 3, 96]);
    // LoRA's rank flag is refused for AdaLoRA, naming the right flags.
    let err = one_line_error(&peft(&["train", "--model", s(&fixtures().join("models/llama")), "--tokenizer", s(&tokenizer), "--data", s(&data),
        "--method", "adalora", "--r", "4", "--output", s(&dir.path().join("x"))]));
    assert!(err.contains("--init-r"), "{err}");
}

#[test]
fn bad_data_files_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = word_tokenizer(dir.path());
    let model = fixtures().join("models/bert");
    let out = dir.path().join("out");
    let fails_with = |data: &str, needles: &[&str]| {
        let path = dir.path().join("data.csv");
        std::fs::write(&path, data).expect("write data");
        let result = peft(&["train", "--model", s(&model), "--tokenizer", s(&tokenizer), "--data", s(&path), "--output", s(&out)]);
        let err = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        for needle in needles {
            assert!(err.contains(needle), "should say `{needle}`: {err}");
        }
    };
    fails_with("", &["no rows"]);
    fails_with("text,label\n", &["no rows"]);
    assert!(!out.exists(), "nothing was written for an empty file");
    fails_with("text,sentiment\nw1 w2,pos\nw3,neg\nw4,pos\n", &["no column `label`", "sentiment", "--label-column"]);
}

#[test]
fn logits_with_a_bf16_base_follow_the_f32_ones_within_bf16_rounding() {
    // A Python-written DoRA adapter on the tiny Llama: with `--dtype bf16` the base weights load
    // in bf16 (the adapter stays f32), so the logits move by bf16's rounding and no more.
    let e = expected("llama_dora");
    let mask: Vec<i64> = e["attention_mask"].clone().convert::<i64>().try_into_vec().expect("mask");
    let adapter = fixtures().join("cases/llama_dora/adapter");
    let model = fixtures().join("models/llama");
    let ids = real_input_ids(&e);
    let run = |dtype: &str| logits(&peft(&["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", &ids, "--dtype", dtype]));
    let ((shape, f32), (_, bf16)) = (run("f32"), run("bf16"));
    let want = floats(&e["adapted"]);
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(max_diff_where(&f32, &want, &mask, shape[2]) < 1e-4);
    let off = max_diff_where(&bf16, &want, &mask, shape[2]);
    assert!(off > 0.0 && off < 0.05 * scale, "bf16 logits are {off} off (largest logit {scale})");
    let bad = peft(&["logits", "--model", s(&model), "--input-ids", "1,2", "--dtype", "f64"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("bf16"));
}
