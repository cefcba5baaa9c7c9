//! `peft train` for long runs, as a user runs them: gradient accumulation, learning-rate
//! schedules, checkpoints and resuming a killed run.

use crate::common;

use common::{fixtures, ok, one_line_error, peft, s, word_tokenizer};
use peft::io::tensors::{TensorMap, read_safetensors};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// 32 rows of three words, two classes.
fn data(dir: &Path) -> PathBuf {
    let path = dir.join("data.csv");
    let mut csv = String::from("text,label\n");
    for i in 0..32 {
        csv.push_str(&format!("\"w{} w{} w{}\",{}\n", 5 + i % 7, 20 + i % 5, 40 + i % 3, if i % 2 == 0 { "pos" } else { "neg" }));
    }
    std::fs::write(&path, csv).expect("write data");
    path
}

/// The tiny BERT with its own dropout off (attention and hidden), so that only the data decides
/// the gradients: batches drawn in another grouping then see the same model.
fn bert_without_dropout(dir: &Path) -> PathBuf {
    let out = dir.join("bert-no-dropout");
    std::fs::create_dir_all(&out).expect("folder");
    let source = fixtures().join("models/bert");
    for entry in std::fs::read_dir(&source).expect("fixture") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, out.join(path.file_name().expect("name"))).expect("copy");
    }
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("config")).expect("json");
    config["hidden_dropout_prob"] = 0.0.into();
    config["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(out.join("config.json"), config.to_string()).expect("config");
    out
}

/// The arguments that train a LoRA classifier on the tiny BERT into `dir/name`, then `extra`.
fn train_args(dir: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    let tokenizer = word_tokenizer(dir);
    let data = data(dir);
    let model = bert_without_dropout(dir);
    let mut args: Vec<String> = ["train", "--model", s(&model), "--tokenizer", s(&tokenizer), "--data", s(&data), "--r", "2"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend(["--lr", "0.01", "--seed", "7", "--output", s(&dir.join(name))].map(String::from));
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Trains as [`train_args`] without dropout; returns the saved adapter's tensors and its folder.
fn train(dir: &Path, name: &str, extra: &[&str]) -> (TensorMap, PathBuf) {
    let mut flags = vec!["--lora-dropout", "0"];
    flags.extend_from_slice(extra);
    let args = train_args(dir, name, &flags);
    ok(&peft(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let adapter = dir.join(name);
    (read_safetensors(&adapter.join("adapter_model.safetensors")).expect("adapter"), adapter)
}

fn max_diff(a: &TensorMap, b: &TensorMap) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let values = |d: &peft::burn::tensor::TensorData| d.clone().convert::<f32>().try_to_vec::<f32>().expect("floats");
    a.iter().flat_map(|(k, x)| values(x).into_iter().zip(values(&b[k])).map(|(p, q)| (p - q).abs()).collect::<Vec<_>>()).fold(0.0, f32::max)
}

#[test]
fn two_accumulated_batches_of_four_train_as_one_batch_of_eight() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (whole, _) = train(dir.path(), "whole", &["--steps", "3", "--batch-size", "8"]);
    let (accumulated, card) = train(dir.path(), "accumulated", &["--steps", "3", "--batch-size", "4", "--gradient-accumulation-steps", "2"]);
    let (small, _) = train(dir.path(), "small", &["--steps", "3", "--batch-size", "4"]);
    assert!(max_diff(&whole, &accumulated) < 1e-5, "{}", max_diff(&whole, &accumulated));
    // Without accumulation the smaller batches train differently: the comparison can fail.
    assert!(max_diff(&whole, &small) > 1e-3, "{}", max_diff(&whole, &small));
    let readme = std::fs::read_to_string(card.join("README.md")).expect("model card");
    assert!(readme.contains("gradient accumulation") && readme.contains("2 batches a step"), "{readme}");
}

#[test]
fn a_step_inside_the_warm_up_runs_at_rate_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    // LoRA's B starts at zero; one step at rate 0 (the first of a warm-up, as in transformers)
    // leaves it there, while the same step without warm-up moves it.
    let (warm, card) = train(dir.path(), "warm", &["--steps", "1", "--batch-size", "8", "--lr-scheduler", "linear", "--warmup-steps", "1"]);
    let (plain, _) = train(dir.path(), "plain", &["--steps", "1", "--batch-size", "8", "--lr-scheduler", "linear"]);
    let b_norm = |t: &TensorMap| -> f32 {
        t.iter().filter(|(k, _)| k.contains("lora_B")).flat_map(|(_, d)| d.clone().convert::<f32>().try_to_vec::<f32>().expect("floats")).map(f32::abs).sum()
    };
    assert_eq!(b_norm(&warm), 0.0);
    assert!(b_norm(&plain) > 0.0);
    let readme = std::fs::read_to_string(card.join("README.md")).expect("model card");
    assert!(readme.contains("linear, 1 warm-up steps"), "{readme}");
}

#[test]
fn bad_schedule_flags_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = word_tokenizer(dir.path());
    let data = data(dir.path());
    let model = fixtures().join("models/bert");
    let out = dir.path().join("out");
    let base = ["train", "--model", s(&model), "--tokenizer", s(&tokenizer), "--data", s(&data), "--output", s(&out)];
    // Flag values clap rejects get its own usage message, on standard error, and exit code 2.
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let out = peft(&args);
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(with(&["--gradient-accumulation-steps", "0"]).contains("--gradient-accumulation-steps"));
    let err = with(&["--lr-scheduler", "triangle"]);
    assert!(err.contains("constant") && err.contains("linear") && err.contains("cosine"), "{err}");
}

/// Flags of a run with dropout on (so the resumed run must repeat its draws), a schedule,
/// accumulation and a checkpoint every 2 of 6 steps.
const LONG_RUN: [&str; 14] = [
    "--lora-dropout", "0.1", "--steps", "6", "--batch-size", "4", "--gradient-accumulation-steps", "2", "--lr-scheduler", "linear",
    "--warmup-steps", "2", "--save-every", "2",
];

#[test]
fn a_killed_run_resumed_from_its_checkpoint_ends_as_the_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |name: &str, extra: &[&str]| -> Vec<String> {
        let mut flags = LONG_RUN.to_vec();
        flags.extend_from_slice(extra);
        train_args(dir.path(), name, &flags)
    };
    ok(&peft(&run("whole", &[]).iter().map(String::as_str).collect::<Vec<_>>()));
    for step in [2, 4, 6] {
        assert!(dir.path().join(format!("whole/checkpoint-{step}/adapter_model.safetensors")).is_file(), "checkpoint-{step}");
    }

    // Killed (SIGKILL) once its first checkpoint is on disk, or at the latest when it ends.
    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_peft")).args(run("killed", &[])).spawn().expect("starts");
    let started = Instant::now();
    while !killed.join("checkpoint-2/trainer_state.json").is_file() && started.elapsed() < Duration::from_secs(120) {
        if child.try_wait().expect("polls").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait().expect("reaped");
    // Only whole checkpoints are published (they are written aside and renamed into place).
    for entry in std::fs::read_dir(&killed).expect("lists") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("checkpoint-")) {
            assert!(path.join("trainer_state.json").is_file() && path.join("optimizer.bpk").is_file(), "{}", path.display());
        }
    }

    let checkpoint = killed.join("checkpoint-2");
    let out = ok(&peft(&run("killed", &["--resume", s(&checkpoint)]).iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(out.contains("2 of 6 steps done"), "{out}");
    let file = |name: &str| std::fs::read(dir.path().join(name).join("adapter_model.safetensors")).expect("adapter");
    assert!(file("whole") == file("killed"), "the resumed run's adapter differs from the uninterrupted run's");

    // A resume with another batch size would draw other data: refused, naming the flag.
    let mut other = run("other", &["--resume", s(&checkpoint)]);
    let at = other.iter().position(|a| a == "--batch-size").expect("flag") + 1;
    other[at] = "8".into();
    let err = one_line_error(&peft(&other.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(err.contains("--batch-size 4") && err.contains("checkpoint-2"), "{err}");
}

#[test]
fn gradient_checkpointing_trains_the_same_adapter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = ["--steps", "3", "--batch-size", "8"];
    let (plain, _) = train(dir.path(), "plain", &flags);
    let mut checkpointed_flags = flags.to_vec();
    checkpointed_flags.push("--gradient-checkpointing");
    let (checkpointed, card) = train(dir.path(), "checkpointed", &checkpointed_flags);
    assert!(max_diff(&plain, &checkpointed) < 1e-6, "{}", max_diff(&plain, &checkpointed));
    let readme = std::fs::read_to_string(card.join("README.md")).expect("model card");
    assert!(readme.contains("gradient checkpointing"), "{readme}");
}

#[test]
fn a_bf16_base_trains_an_f32_adapter_close_to_the_f32_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (f32_run, _) = train(dir.path(), "f32", &["--steps", "4", "--batch-size", "8"]);
    let (bf16_run, adapter) = train(dir.path(), "bf16", &["--steps", "4", "--batch-size", "8", "--dtype", "bf16"]);
    for (key, value) in &bf16_run {
        assert_eq!(value.dtype(), peft::burn::tensor::DType::F32, "{key}: the adapter stays f32");
    }
    // Both runs start from the same draws and B = 0, so B is what each run learned; AdamW's
    // normalised steps amplify bf16's rounding of near-zero gradients, so compare directions.
    let learned = |run: &TensorMap| -> Vec<f32> {
        run.iter().filter(|(k, _)| k.contains("lora_B")).flat_map(|(_, v)| v.clone().try_to_vec::<f32>().expect("floats")).collect()
    };
    let (a, b) = (learned(&bf16_run), learned(&f32_run));
    let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cosine = dot / (norm(&a) * norm(&b)).max(f32::MIN_POSITIVE);
    assert!(norm(&a) > 0.0 && cosine > 0.9, "the bf16 run learned {} in a direction at cosine {cosine} to the f32 run's", norm(&a));
    assert!(max_diff(&bf16_run, &f32_run) > 0.0, "bf16 rounding changes something");
    let card = std::fs::read_to_string(adapter.join("adapter_config.json")).expect("config");
    assert!(card.contains("LORA"));
}

#[test]
fn quantize_keeps_the_base_in_burns_blocks_and_trains_an_adapter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (f32_run, _) = train(dir.path(), "f32", &["--steps", "4", "--batch-size", "8"]);
    for q in ["int8", "int4"] {
        let name = format!("quantized-{q}");
        let args = train_args(dir.path(), &name, &["--lora-dropout", "0", "--steps", "4", "--batch-size", "8", "--quantize", q]);
        let stdout = ok(&peft(&args.iter().map(String::as_str).collect::<Vec<_>>()));
        assert!(stdout.contains(&format!("linear weights packed ({q})")), "{stdout}");
        let run = read_safetensors(&dir.path().join(&name).join("adapter_model.safetensors")).expect("adapter");
        assert_eq!(run.keys().collect::<Vec<_>>(), f32_run.keys().collect::<Vec<_>>());
        assert!(max_diff(&run, &f32_run) > 0.0, "{q}: the quantized base changes the gradients a little");
    }
    let gguf = dir.path().join("model.gguf");
    std::fs::write(&gguf, b"GGUF").expect("writes");
    let data = data(dir.path());
    let err = one_line_error(&peft(&["train", "--model", s(&gguf), "--data", s(&data), "--quantize", "int4"]));
    assert!(err.contains("already quantized"), "{err}");
}
