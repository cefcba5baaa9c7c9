//! `fixtures/gguf/tiny.gguf`, written by Python's `gguf.GGUFWriter` (`fixtures/gen_gguf.py`):
//! every metadata type round-trips and every block format dequantizes exactly as
//! `gguf.quants.dequantize` does (`tiny_dequant.safetensors`).

use peft_io::gguf::{GgufFile, Value};
use peft_io::tensors::read_safetensors;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gguf")
}

/// Whether a GGUF value equals the JSON the Python script wrote (FLOAT32 compared as f32).
fn same(value: &Value, json: &Json) -> bool {
    match (value, json) {
        (Value::F32(v), Json::Number(n)) => n.as_f64().is_some_and(|n| n as f32 == *v),
        (Value::F64(v), Json::Number(n)) => n.as_f64() == Some(*v),
        (Value::Bool(v), Json::Bool(b)) => v == b,
        (Value::String(v), Json::String(s)) => v == s,
        (Value::Array(_, items), Json::Array(js)) => items.len() == js.len() && items.iter().zip(js).all(|(i, j)| same(i, j)),
        (v, Json::Number(n)) if n.is_i64() => v.as_i64() == n.as_i64(),
        (v, Json::Number(n)) => v.as_u64().is_some() && v.as_u64() == n.as_u64(),
        _ => false,
    }
}

#[test]
fn python_written_metadata_round_trips() {
    let file = GgufFile::open(fixtures().join("tiny.gguf")).expect("opens");
    let text = std::fs::read_to_string(fixtures().join("tiny.json")).expect("reads");
    let want: Json = serde_json::from_str(&text).expect("parses");
    assert_eq!(file.version, 3);
    assert_eq!(file.get("general.architecture").and_then(Value::as_str), Some("llama"));
    let metadata = want["metadata"].as_object().expect("an object");
    for (key, entry) in metadata {
        let got = file.get(key).unwrap_or_else(|| panic!("`{key}` is missing"));
        assert_eq!(got.value_type().name(), entry["type"], "type of `{key}`");
        assert!(same(got, &entry["value"]), "`{key}`: {got:?} vs {}", entry["value"]);
    }
    let tensors = want["tensors"].as_object().expect("an object");
    assert_eq!(file.tensors.len(), tensors.len());
    for (name, entry) in tensors {
        let info = file.tensor_info(name).unwrap_or_else(|| panic!("tensor `{name}` is missing"));
        assert_eq!(format!("{:?}", info.ggml_type), entry["type"].as_str().expect("a string"));
        let shape: Vec<usize> = serde_json::from_value(entry["shape"].clone()).expect("a shape");
        assert_eq!(info.shape, shape);
        assert_eq!(info.offset % file.alignment, 0);
    }
}

#[test]
fn every_block_format_dequantizes_like_python() {
    let file = GgufFile::open(fixtures().join("tiny.gguf")).expect("opens");
    let expected = read_safetensors(&fixtures().join("tiny_dequant.safetensors")).expect("reads");
    assert_eq!(expected.len(), 6, "F32, F16, BF16, Q8_0, Q4_0, Q4_1");
    for (name, want) in &expected {
        let got = file.read_tensor(name).expect("reads");
        assert_eq!(got.shape(), want.shape(), "{name}");
        let (got, want) = (got.try_to_vec::<f32>().expect("f32"), want.try_to_vec::<f32>().expect("f32"));
        assert_eq!(got, want, "{name} differs from gguf.quants.dequantize");
    }
}

#[test]
fn k_quant_blocks_dequantize_like_python() {
    let file = GgufFile::open(fixtures().join("kquants.gguf")).expect("opens");
    let expected = read_safetensors(&fixtures().join("kquants_dequant.safetensors")).expect("reads");
    assert_eq!(expected.len(), 3, "Q4_K, Q5_K, Q6_K");
    for (name, want) in &expected {
        let info = file.tensor_info(name).unwrap_or_else(|| panic!("tensor `{name}` is missing"));
        assert_eq!(info.shape, vec![4, 512], "{name}");
        let got = file.read_tensor(name).expect("reads");
        let (got, want) = (got.try_to_vec::<f32>().expect("f32"), want.try_to_vec::<f32>().expect("f32"));
        let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs() / w.abs().max(1e-3)).fold(0.0f32, f32::max);
        // gguf-py computes in f32 in another order of operations (d·sc first, or not), so the
        // last bit may differ; anything beyond is a layout mistake.
        assert!(worst < 1e-5, "{name} differs from gguf.quants.dequantize by {worst} (relative)");
    }
}
