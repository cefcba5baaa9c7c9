//! Safetensors files as maps of Burn `TensorData`.

use burn::tensor::{DType, TensorData};
use indexmap::IndexMap;
use peft_core::{Error, Result};
use safetensors::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

/// The tensors of one file by key, in file order, converted to F32.
pub type TensorMap = IndexMap<String, TensorData>;

/// Reads every tensor of a safetensors file, converting F16 and BF16 to F32.
///
/// Integer tensors (I64, I32) are kept as they are. Fails with [`Error::Io`] when the file cannot
/// be read and [`Error::Format`] when it is not a safetensors file or holds another dtype.
pub fn read_safetensors(path: &Path) -> Result<TensorMap> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    parse_safetensors(&bytes, path)
}

/// Parses safetensors bytes; `path` only names the source in errors.
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<TensorMap> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| format_error(path, e.to_string()))?;
    let mut out = TensorMap::new();
    let mut views = file.tensors();
    // The header is a JSON object with no defined order: sort for a stable order.
    views.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in views {
        let data = to_tensor_data(&name, view.dtype(), view.shape(), view.data(), path)?;
        out.insert(name, data);
    }
    Ok(out)
}

/// One tensor's entry in a safetensors header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The key.
    pub name: String,
    /// The stored dtype (`F32`, `BF16`, ...).
    pub dtype: String,
    /// The shape.
    pub shape: Vec<usize>,
}

/// The header of a safetensors file (names, stored dtypes, shapes), sorted by name; only the
/// header is read.
pub fn describe_safetensors(path: &Path) -> Result<Vec<TensorInfo>> {
    let (metadata, _) = crate::stored::read_header(path)?;
    let mut out: Vec<TensorInfo> = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| TensorInfo { name, dtype: format!("{:?}", info.dtype), shape: info.shape.clone() })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Fails unless [`to_tensor_data`] converts `dtype`.
pub(crate) fn check_dtype(name: &str, dtype: Dtype, path: &Path) -> Result<()> {
    match dtype {
        Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64 | Dtype::I64 | Dtype::I32 | Dtype::BOOL => Ok(()),
        other => Err(unsupported_dtype(name, other, path)),
    }
}

fn unsupported_dtype(name: &str, dtype: Dtype, path: &Path) -> Error {
    format_error(path, format!("tensor `{name}` has dtype {dtype:?}; supported: F32, F16, BF16, F64, I64, I32, BOOL"))
}

/// A tensor's little-endian `bytes` as `TensorData`: floats as `f32`, integers and booleans as
/// stored.
pub(crate) fn to_tensor_data(name: &str, dtype: Dtype, shape: &[usize], bytes: &[u8], path: &Path) -> Result<TensorData> {
    let shape = shape.to_vec();
    let floats = |f: &dyn Fn(&[u8]) -> f32, width: usize| -> Vec<f32> { bytes.chunks_exact(width).map(f).collect() };
    Ok(match dtype {
        Dtype::F32 => TensorData::new(floats(&|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]), 4), shape),
        Dtype::F16 => TensorData::new(floats(&|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32(), 2), shape),
        Dtype::BF16 => TensorData::new(floats(&|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32(), 2), shape),
        Dtype::F64 => TensorData::new(
            bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect::<Vec<_>>(),
            shape,
        ),
        Dtype::I64 => TensorData::new(
            bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect::<Vec<_>>(),
            shape,
        ),
        Dtype::I32 => TensorData::new(
            bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))).collect::<Vec<_>>(),
            shape,
        ),
        Dtype::BOOL => TensorData::new(bytes.iter().map(|b| *b != 0).collect::<Vec<_>>(), shape),
        other => return Err(unsupported_dtype(name, other, path)),
    })
}

/// As [`to_tensor_data`], but f16 and bf16 tensors keep their type (their bytes become the
/// tensor's, no conversion), for loads into a half-precision model.
pub(crate) fn to_tensor_data_native(name: &str, dtype: Dtype, shape: &[usize], bytes: Vec<u8>, path: &Path) -> Result<TensorData> {
    let half = match dtype {
        Dtype::F16 => Some(burn::tensor::DType::F16),
        Dtype::BF16 => Some(burn::tensor::DType::BF16),
        _ => None,
    };
    match half {
        // The file is little-endian, as the tensor's bytes are on a little-endian machine.
        Some(half) if cfg!(target_endian = "little") => Ok(TensorData::from_bytes_vec(bytes, shape.to_vec(), half)),
        _ => to_tensor_data(name, dtype, shape, &bytes, path),
    }
}

pub(crate) fn format_error(path: &Path, message: String) -> Error {
    Error::Format { path: path.into(), format: "safetensors", message }
}

/// A tensor ready for writing: F32, F16, BF16 or I64 little-endian bytes.
struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn to_owned(name: &str, data: TensorData, path: &Path) -> Result<Owned> {
    let shape = data.shape().to_vec();
    let (dtype, bytes) = match data.dtype() {
        // Half-precision tensors keep their type: their bytes are the file's (little-endian).
        DType::BF16 if cfg!(target_endian = "little") => (Dtype::BF16, data.as_bytes().to_vec()),
        DType::F16 if cfg!(target_endian = "little") => (Dtype::F16, data.as_bytes().to_vec()),
        DType::I64 | DType::I32 => {
            let v: Vec<i64> = data.convert::<i64>().try_to_vec::<i64>().map_err(|e| format_error(path, format!("{name}: {e:?}")))?;
            (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
        _ => {
            let v: Vec<f32> = data.convert::<f32>().try_to_vec::<f32>().map_err(|e| format_error(path, format!("{name}: {e:?}")))?;
            (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
    };
    Ok(Owned { dtype, shape, bytes })
}

/// Writes tensors to a safetensors file atomically: a temporary file in the same folder, then a
/// rename, so a reader never sees half a file and a failed write leaves the old file in place.
///
/// f16 and bf16 tensors are written in their type, other floats as F32, integers as I64. Keys
/// are sorted as the Python library writes them.
pub fn write_safetensors(path: &Path, tensors: Vec<(String, TensorData)>) -> Result<()> {
    write_atomic(path, &safetensors_bytes(path, tensors)?)
}

/// The bytes of a safetensors file holding `tensors` (F32 floats, I64 integers, sorted keys);
/// `path` only names the file in errors.
pub fn safetensors_bytes(path: &Path, tensors: Vec<(String, TensorData)>) -> Result<Vec<u8>> {
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, data) in tensors {
        let o = to_owned(&name, data, path)?;
        owned.push((name, o));
    }
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(owned.iter().map(|(n, o)| (n.as_str(), o)), Some(metadata)).map_err(|e| format_error(path, e.to_string()))
}

/// Writes bytes to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("cannot write", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_ints_round_trip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.safetensors");
        let tensors = vec![
            ("b".to_string(), TensorData::new(vec![1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0], [2, 3])),
            ("a".to_string(), TensorData::new(vec![4i64, 5, 6], [3])),
        ];
        write_safetensors(&path, tensors).expect("writes");
        let back = read_safetensors(&path).expect("reads");
        assert_eq!(back.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(back["b"].shape().to_vec(), vec![2, 3]);
        assert_eq!(back["b"].try_to_vec::<f32>().expect("f32"), vec![1.5, -2.0, 3.25, 0.0, 7.0, 8.0]);
        assert_eq!(back["a"].try_to_vec::<i64>().expect("i64"), vec![4, 5, 6]);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn garbage_is_a_format_error_not_a_panic() {
        let err = parse_safetensors(b"not a safetensors file", Path::new("x.safetensors")).expect_err("garbage");
        assert!(matches!(err, Error::Format { .. }), "{err}");
    }
}
