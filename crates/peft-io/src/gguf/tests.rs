//! Header parsing on files written here byte by byte: round trips, and every truncation or
//! corruption an error rather than a panic.

#[cfg(test)] // (tidy: everything below is test code)
use super::*;

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(x) => string(out, x),
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
        Value::Array(ty, items) => {
            out.extend(tag(*ty).to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            items.iter().for_each(|i| value(out, i));
        }
    }
}

fn tag(ty: ValueType) -> u32 {
    (0..13).find(|t| ValueType::from_tag(*t) == Some(ty)).expect("every type has a tag")
}

fn metadata() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", Value::String("llama".into())),
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-100)),
        ("u16", Value::U16(60000)),
        ("i16", Value::I16(-30000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("f32", Value::F32(0.1)),
        ("bool", Value::Bool(true)),
        ("u64", Value::U64(1 << 40)),
        ("i64", Value::I64(-(1 << 40))),
        ("f64", Value::F64(-1e300)),
        ("strings", Value::Array(ValueType::String, vec![Value::String("a b".into()), Value::String("é".into())])),
        ("nested", Value::Array(ValueType::Array, vec![Value::Array(ValueType::I32, vec![Value::I32(-1), Value::I32(2)])])),
    ]
}

/// A v3 file with the metadata above and one Q8_0 tensor `[2, 32]` (GGUF dims `[32, 2]`).
fn file_bytes(alignment: u64) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(1u64.to_le_bytes());
    let mut kv = metadata();
    kv.push(("general.alignment", Value::U32(alignment as u32)));
    out.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in &kv {
        string(&mut out, k);
        out.extend(tag(v.value_type()).to_le_bytes());
        value(&mut out, v);
    }
    string(&mut out, "w");
    out.extend(2u32.to_le_bytes());
    out.extend(32u64.to_le_bytes());
    out.extend(2u64.to_le_bytes());
    out.extend(8u32.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.resize((out.len() as u64).div_ceil(alignment) as usize * alignment as usize, 0);
    for row in 0..2i8 {
        out.extend(half::f16::from_f32(0.5).to_le_bytes());
        out.extend((0..32).map(|j| (j - 16 + row) as u8));
    }
    out
}

fn write(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("succeeds");
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, bytes).expect("succeeds");
    (dir, path)
}

#[test]
fn metadata_and_tensors_round_trip() {
    let (_dir, path) = write(&file_bytes(64));
    let file = GgufFile::open(&path).expect("succeeds");
    assert_eq!(file.version, 3);
    assert_eq!(file.alignment, 64);
    for (k, v) in metadata() {
        assert_eq!(file.get(k), Some(&v), "{k}");
    }
    assert_eq!(file.data_offset % 64, 0);
    let info = file.tensor_info("w").expect("succeeds");
    assert_eq!((info.shape.clone(), info.ggml_type, info.byte_len), (vec![2, 32], GgmlType::Q8_0, 68));
    let w = file.read_tensor("w").expect("succeeds");
    assert_eq!(w.shape().to_vec(), vec![2, 32]);
    let want: Vec<f32> = (0..2).flat_map(|r| (0..32).map(move |j| 0.5 * (j - 16 + r) as f32)).collect();
    assert_eq!(w.try_to_vec::<f32>().expect("succeeds"), want);
    assert!(matches!(file.read_tensor("nope"), Err(Error::MissingTensor { .. })));
}

#[test]
fn every_truncation_is_a_format_error_naming_the_file() {
    let bytes = file_bytes(32);
    for len in 0..bytes.len() {
        let (_dir, path) = write(&bytes[..len]);
        match GgufFile::open(&path) {
            Err(Error::Format { path: p, format: "GGUF", .. }) => assert_eq!(p, path),
            other => panic!("a file cut at {len} bytes gave {other:?}"),
        }
    }
}

#[test]
fn corrupt_headers_are_errors() {
    let good = file_bytes(32);
    type Corrupt = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Corrupt)> = vec![
        ("magic", Box::new(|b| b[0] = b'X')),
        ("version", Box::new(|b| b[4] = 1)),
        ("big-endian", Box::new(|b| b[4..8].copy_from_slice(&3u32.to_be_bytes()))),
        ("tensor count", Box::new(|b| b[8..16].copy_from_slice(&u64::MAX.to_le_bytes()))),
        ("metadata count", Box::new(|b| b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes()))),
        ("key length", Box::new(|b| b[24..32].copy_from_slice(&u64::MAX.to_le_bytes()))),
        ("value type", Box::new(|b| b[52] = 13)),
    ];
    for (what, corrupt) in cases {
        let mut b = good.clone();
        corrupt(&mut b);
        let (_dir, path) = write(&b);
        let err = GgufFile::open(&path).expect_err(what);
        assert!(matches!(err, Error::Format { .. }), "{what}: {err}");
        assert!(err.to_string().contains("m.gguf"), "{what}: {err}");
    }
}

#[test]
fn hostile_tensor_entries_are_errors() {
    let good = file_bytes(32);
    // The tensor entry follows the metadata: name (8 + 1), n_dims, dims, type, offset.
    let at = good.windows(9).position(|w| w == [1, 0, 0, 0, 0, 0, 0, 0, b'w']).expect("succeeds") + 9;
    let patch = |offset: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[at + offset..at + offset + bytes.len()].copy_from_slice(bytes);
        b
    };
    for (what, b) in [
        ("dims", patch(0, &9u32.to_le_bytes())),
        ("type", patch(20, &12u32.to_le_bytes())),
        ("partial block", patch(4, &31u64.to_le_bytes())),
        ("huge shape", patch(12, &u64::MAX.to_le_bytes())),
        ("offset past the end", patch(24, &4096u64.to_le_bytes())),
        ("misaligned offset", patch(24, &1u64.to_le_bytes())),
    ] {
        let (_dir, path) = write(&b);
        let err = GgufFile::open(&path).expect_err(what);
        assert!(matches!(err, Error::Format { .. }), "{what}: {err}");
    }
}

#[test]
fn bytes_in_memory_read_as_the_file_does() {
    let bytes = file_bytes(64);
    let (_dir, path) = write(&bytes);
    let (from_file, in_memory) = (GgufFile::open(&path).expect("opens"), GgufFile::from_bytes(&bytes, &path).expect("parses"));
    assert_eq!((&in_memory.metadata, &in_memory.tensors, in_memory.data_offset), (&from_file.metadata, &from_file.tensors, from_file.data_offset));
    let values = |d: TensorData| d.try_to_vec::<f32>().expect("f32");
    assert_eq!(values(in_memory.read_tensor_from(&bytes, "w").expect("reads")), values(from_file.read_tensor("w").expect("reads")));
    assert!(matches!(in_memory.read_tensor_from(&bytes, "nope"), Err(Error::MissingTensor { .. })));
    // Other bytes than those parsed: a tensor past their end is an error, not a panic.
    let err = in_memory.read_tensor_from(&bytes[..bytes.len() - 1], "w").expect_err("cut short");
    assert!(matches!(err, Error::Format { .. }), "{err}");
}

#[test]
fn a_tensor_name_given_twice_is_an_error() {
    // Found by `fuzz/` (target `gguf`): the second tensor of a name was listed but never readable.
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(2u64.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    for offset in [0u64, 32] {
        string(&mut out, "w");
        out.extend(1u32.to_le_bytes());
        out.extend(8u64.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(offset.to_le_bytes());
    }
    out.resize(out.len().div_ceil(32) * 32 + 64, 0);
    let err = GgufFile::from_bytes(&out, "m.gguf").expect_err("a duplicate name");
    assert!(matches!(&err, Error::Format { .. }) && err.to_string().contains("`w` appears twice"), "{err}");
    let mut once = out.clone();
    once[8] = 1;
    assert!(GgufFile::from_bytes(&once, "m.gguf").is_ok(), "the same file with one tensor reads");
}
