//! Checkpoint tensors read when a parameter needs them.
//!
//! Loading a model used to read the whole checkpoint, convert every tensor to `f32`, copy each
//! into the model and only then free the rest: about four times a bf16 checkpoint in memory. A
//! [`LazyTensors`] map instead knows each tensor's shape from the file's header and reads its
//! bytes when [`weights::load_into`](crate::weights::load_into) sets that one parameter, so a
//! load holds the model plus one tensor in conversion.
//!
//! The bytes are read with ordinary positioned reads rather than a memory map: mapping a file is
//! `unsafe` in Rust (another process may change it under the map), which this workspace forbids,
//! and the page cache already keeps a re-read cheap.

use burn::tensor::{DType, FloatDType, TensorData};
use safetensors::Dtype;
use indexmap::IndexMap;
use peft_core::{Error, Result};
use safetensors::tensor::Metadata;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::tensors::{check_dtype, format_error, to_tensor_data_native};

/// Reads one tensor's values when called: floats converted to the float type asked for (as
/// they are read, so no copy in another type is ever whole), or with `None` f16/bf16 as stored
/// and other floats as `f32`.
type Reader = Arc<dyn Fn(Option<Target>) -> Result<TensorData> + Send + Sync>;

/// What [`StoredTensor::read_as`] asks a reader for.
#[derive(Clone, Copy, Debug)]
struct Target {
    dtype: FloatDType,
    /// Whether a 2-D tensor comes back transposed.
    transposed: bool,
}

/// One tensor of a checkpoint: its shape, and its values in memory or a way to read them.
///
/// Cloning is cheap in both cases (a deferred tensor is read again by each clone's
/// [`StoredTensor::read`]).
#[derive(Clone)]
pub struct StoredTensor {
    shape: Vec<usize>,
    source: Source,
}

#[derive(Clone)]
enum Source {
    Memory(TensorData),
    Deferred(Reader),
}

impl StoredTensor {
    /// A tensor whose values are already in memory.
    pub fn in_memory(data: TensorData) -> Self {
        StoredTensor { shape: data.shape().to_vec(), source: Source::Memory(data) }
    }

    /// A tensor of `shape` whose values `read` produces when asked; `read` must give that shape.
    pub fn deferred(shape: Vec<usize>, read: impl Fn() -> Result<TensorData> + Send + Sync + 'static) -> Self {
        let read = move |target: Option<Target>| Ok(as_target(read()?, target));
        StoredTensor { shape, source: Source::Deferred(Arc::new(read)) }
    }

    /// The shape, known without reading the values.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values: a copy of those in memory, or read now.
    ///
    /// # Errors
    /// Whatever the reader fails with: [`Error::Io`] when the file can no longer be read,
    /// [`Error::Format`] when its bytes no longer match the header.
    pub fn read(&self) -> Result<TensorData> {
        let data = self.read_native()?;
        Ok(match data.dtype() {
            DType::F16 | DType::BF16 => data.convert::<f32>(),
            _ => data,
        })
    }

    /// The values in the type the file stores them in where that is f16 or bf16 (no conversion;
    /// a load into a half-precision model uses the bytes as they are), else as [`StoredTensor::read`].
    ///
    /// # Errors
    /// As [`StoredTensor::read`].
    pub fn read_native(&self) -> Result<TensorData> {
        match &self.source {
            Source::Memory(data) => Ok(data.clone()),
            Source::Deferred(read) => read(None),
        }
    }

    /// The values with floats in `dtype`, and a 2-D tensor `[rows, cols]` returned `[cols, rows]`
    /// when `transposed`: a safetensors tensor is converted and put in place as its bytes are
    /// read, a few megabytes at a time, so loading an f32 checkpoint into bf16 holds no whole
    /// copy besides the result. Integer tensors are returned as stored.
    ///
    /// # Errors
    /// As [`StoredTensor::read`].
    pub fn read_as(&self, dtype: FloatDType, transposed: bool) -> Result<TensorData> {
        let target = Target { dtype, transposed };
        match &self.source {
            Source::Memory(data) => Ok(as_target(data.clone(), Some(target))),
            Source::Deferred(read) => read(Some(target)),
        }
    }
}

impl fmt::Debug for StoredTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.source {
            Source::Memory(_) => "in memory",
            Source::Deferred(_) => "on disk",
        };
        write!(f, "StoredTensor({:?}, {place})", self.shape)
    }
}

impl From<TensorData> for StoredTensor {
    fn from(data: TensorData) -> Self {
        StoredTensor::in_memory(data)
    }
}

/// A checkpoint's tensors by key, in a stable order, each read when needed.
pub type LazyTensors = IndexMap<String, StoredTensor>;

/// What [`load_into`](crate::weights::load_into) needs of a map's values: the shape without the
/// values, then the values (as `f32`, or integers as stored).
pub trait TensorValue {
    /// The shape.
    fn value_shape(&self) -> &[usize];
    /// The values, owned.
    ///
    /// # Errors
    /// When they cannot be read (see [`StoredTensor::read`]).
    fn value(&self) -> Result<TensorData>;
    /// The values with f16/bf16 kept as stored (see [`StoredTensor::read_native`]); by default
    /// [`TensorValue::value`].
    ///
    /// # Errors
    /// As [`TensorValue::value`].
    fn value_as(&self, dtype: FloatDType, transposed: bool) -> Result<TensorData> {
        Ok(as_target(self.value()?, Some(Target { dtype, transposed })))
    }
}

/// `data` as `target` asks (unchanged when `None`; integers keep their type).
fn as_target(data: TensorData, target: Option<Target>) -> TensorData {
    let Some(Target { dtype, transposed }) = target else { return data };
    let data = if data.dtype().is_float() && data.dtype() != DType::from(dtype) { data.convert_dtype(dtype.into()) } else { data };
    match data.shape().as_slice() {
        &[rows, cols] if transposed => transpose_bytes(data, rows, cols),
        _ => data,
    }
}

/// `[rows, cols]` to `[cols, rows]` in the data's own element type, moving bytes.
pub(crate) fn transpose_bytes(data: TensorData, rows: usize, cols: usize) -> TensorData {
    let dtype = data.dtype();
    let size = dtype.size();
    let bytes = data.as_bytes();
    let mut out = vec![0u8; bytes.len()];
    for r in 0..rows {
        for c in 0..cols {
            let (from, to) = ((r * cols + c) * size, (c * rows + r) * size);
            out[to..to + size].copy_from_slice(&bytes[from..from + size]);
        }
    }
    TensorData::from_bytes_vec(out, [cols, rows], dtype)
}

impl TensorValue for TensorData {
    fn value_shape(&self) -> &[usize] {
        self.shape()
    }
    fn value(&self) -> Result<TensorData> {
        Ok(self.clone())
    }
}

impl TensorValue for StoredTensor {
    fn value_shape(&self) -> &[usize] {
        self.shape()
    }
    fn value(&self) -> Result<TensorData> {
        self.read()
    }
    fn value_as(&self, dtype: FloatDType, transposed: bool) -> Result<TensorData> {
        self.read_as(dtype, transposed)
    }
}

/// The length prefix of a safetensors header, in bytes.
const LENGTH_PREFIX: u64 = 8;
/// The largest header accepted (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// The tensors of a safetensors file, from its header only; each tensor's bytes are read (and
/// F16/BF16/F64 converted to `f32`) when it is [`StoredTensor::read`], sorted by key.
///
/// The header is checked as [`parse_safetensors`](crate::tensors::parse_safetensors) checks it
/// (offsets contiguous, sizes matching shapes and dtypes, the data ending where the file ends)
/// and every dtype must be one the reader converts, so a file that opens reads whole unless it
/// changes on disk in between.
///
/// # Errors
/// [`Error::Io`] when the file cannot be opened or read, [`Error::Format`] naming the file when
/// its header is malformed, it is truncated, or a tensor has an unsupported dtype.
pub fn read_lazy_safetensors(path: &Path) -> Result<LazyTensors> {
    let (metadata, data_start) = read_header(path)?;
    let shared_path: Arc<PathBuf> = Arc::new(path.to_path_buf());
    let mut entries: Vec<(String, StoredTensor)> = Vec::new();
    for (name, info) in metadata.tensors() {
        // Fails now, not halfway through a load, on a dtype the reader cannot convert.
        check_dtype(&name, info.dtype, path)?;
        let (start, end) = info.data_offsets;
        let (dtype, shape) = (info.dtype, info.shape.clone());
        let (file_path, key) = (Arc::clone(&shared_path), name.clone());
        let offset = data_start + start as u64;
        let read = move |target: Option<Target>| match target {
            Some(target) if is_float(dtype) => read_converted(&file_path, offset, end - start, dtype, target, &shape),
            _ => Ok(as_target(to_tensor_data_native(&key, dtype, &shape, read_range(&file_path, offset, end - start)?, &file_path)?, target)),
        };
        entries.push((name, StoredTensor { shape: info.shape.clone(), source: Source::Deferred(Arc::new(read)) }));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries.into_iter().collect())
}

/// The checked header of a safetensors file and where its tensor data starts.
pub(crate) fn read_header(path: &Path) -> Result<(Metadata, u64)> {
    let mut file = File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io("cannot read", path, e))?.len();
    let header = header_bytes(&mut file, file_len, path)?;
    let metadata: Metadata = serde_json::from_slice(&header).map_err(|e| format_error(path, format!("malformed header: {e}")))?;
    let data_start = LENGTH_PREFIX + header.len() as u64;
    let data_len = metadata.data_len() as u64;
    if data_start.checked_add(data_len) != Some(file_len) {
        let message = format!(
            "the header describes {data_len} bytes of tensor data after {data_start} header bytes, but the file has {file_len} bytes; \
             it is truncated or corrupt (download it again)"
        );
        return Err(format_error(path, message));
    }
    Ok((metadata, data_start))
}

/// The JSON header of a safetensors file, its length checked against the file's.
fn header_bytes(file: &mut File, file_len: u64, path: &Path) -> Result<Vec<u8>> {
    let mut prefix = [0u8; LENGTH_PREFIX as usize];
    file.read_exact(&mut prefix)
        .map_err(|_| format_error(path, format!("the file has {file_len} bytes, too few for a safetensors header")))?;
    let len = u64::from_le_bytes(prefix);
    if len > MAX_HEADER || LENGTH_PREFIX.saturating_add(len) > file_len {
        let message = format!("the header claims {len} bytes but the file has {file_len}; it is truncated or not a safetensors file");
        return Err(format_error(path, message));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|e| Error::io("cannot read", path, e))?;
    Ok(header)
}

fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

/// Elements converted per read: 1 MiB of f32.
const CHUNK: usize = 1 << 18;

/// The `len` bytes of floats of type `stored` at `offset` in `path`, converted to `target`'s type
/// (and transposed when it asks) a chunk at a time: what is held beyond the result is one chunk.
fn read_converted(path: &Path, offset: u64, len: usize, stored: Dtype, target: Target, shape: &[usize]) -> Result<TensorData> {
    let width = stored.bitsize() / 8;
    let decode = |c: &[u8]| -> f32 {
        match stored {
            Dtype::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
            Dtype::BF16 => half::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
            Dtype::F64 => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32,
            _ => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        }
    };
    let io = |e| Error::io("cannot read", path, e);
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let target_dtype = DType::from(target.dtype);
    let size = target_dtype.size();
    let count = len / width.max(1);
    // Element `k` (row `k / cols`, column `k % cols`) goes to `k`, or transposed to `col·rows + row`.
    let (rows, cols) = match shape {
        &[rows, cols] if target.transposed => (rows, cols.max(1)),
        _ => (1, count.max(1)),
    };
    let place = |k: usize| if target.transposed { (k % cols) * rows + k / cols } else { k };
    let encode = |x: f32, to: &mut [u8]| match target.dtype {
        FloatDType::BF16 => to.copy_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
        FloatDType::F16 => to.copy_from_slice(&half::f16::from_f32(x).to_le_bytes()),
        _ => to.copy_from_slice(&x.to_le_bytes()),
    };
    let mut out = vec![0u8; count * size];
    let mut chunk = vec![0u8; CHUNK.min(count).max(1) * width];
    let mut k = 0;
    while k < count {
        let n = (chunk.len() / width).min(count - k);
        file.read_exact(&mut chunk[..n * width]).map_err(io)?;
        for value in chunk[..n * width].chunks_exact(width) {
            let at = place(k) * size;
            encode(decode(value), &mut out[at..at + size]);
            k += 1;
        }
    }
    let shape = if target.transposed && shape.len() == 2 { vec![shape[1], shape[0]] } else { shape.to_vec() };
    Ok(TensorData::from_bytes_vec(out, shape, target_dtype))
}

/// `len` bytes of `path` from `offset`.
fn read_range(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = vec![0u8; len];
        file.read_exact(&mut bytes)?;
        Ok(bytes)
    };
    read().map_err(|e| Error::io("cannot read", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensors::{parse_safetensors, safetensors_bytes, write_safetensors};

    fn sample() -> Vec<(String, TensorData)> {
        vec![
            ("b".to_string(), TensorData::new(vec![1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0], [2, 3])),
            ("a".to_string(), TensorData::new(vec![4i64, 5, 6], [3])),
        ]
    }

    #[test]
    fn reads_the_same_tensors_as_the_whole_file_parser() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("m.safetensors");
        write_safetensors(&path, sample()).expect("writes");
        let lazy = read_lazy_safetensors(&path).expect("opens");
        let whole = parse_safetensors(&std::fs::read(&path).expect("reads"), &path).expect("parses");
        assert_eq!(lazy.keys().collect::<Vec<_>>(), whole.keys().collect::<Vec<_>>());
        for (key, stored) in &lazy {
            assert_eq!(stored.shape(), whole[key].shape().as_slice(), "{key}");
            assert_eq!(stored.read().expect("reads"), whole[key], "{key}");
        }
    }

    #[test]
    fn read_as_converts_chunk_by_chunk_to_what_a_whole_conversion_gives() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("m.safetensors");
        // More than one chunk, and not a whole number of them.
        let n = CHUNK + 5;
        let values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let ints = TensorData::new(vec![4i64, 5, 6], [3]);
        write_safetensors(&path, vec![("w".into(), TensorData::new(values, [n])), ("i".into(), ints.clone())]).expect("writes");
        let lazy = read_lazy_safetensors(&path).expect("opens");
        let whole = lazy["w"].read().expect("reads");
        for dtype in [FloatDType::BF16, FloatDType::F16, FloatDType::F32] {
            let got = lazy["w"].read_as(dtype, false).expect("reads");
            assert_eq!(got.dtype(), DType::from(dtype));
            assert_eq!(got, whole.clone().convert_dtype(dtype.into()), "{dtype:?}");
        }
        assert_eq!(lazy["i"].read_as(FloatDType::BF16, false).expect("reads"), ints, "integers stay as stored");
        // Transposed while read: a [rows, cols] view of the same values.
        let (rows, cols) = (1031, 1021);
        let matrix: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5).collect();
        write_safetensors(&path, vec![("m".into(), TensorData::new(matrix.clone(), [rows, cols]))]).expect("writes");
        let lazy = read_lazy_safetensors(&path).expect("opens");
        let got = lazy["m"].read_as(FloatDType::F32, true).expect("reads");
        assert_eq!(got.shape().to_vec(), vec![cols, rows]);
        let got = got.try_to_vec::<f32>().expect("f32");
        assert!((0..rows).all(|r| (0..cols).all(|c| got[c * rows + r] == matrix[r * cols + c])));
    }

    #[test]
    fn a_truncated_file_fails_at_open_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("m.safetensors");
        let bytes = safetensors_bytes(&path, sample()).expect("serialises");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("writes");
        let err = read_lazy_safetensors(&path).expect_err("truncated");
        assert!(matches!(&err, Error::Format { path: p, .. } if *p == path), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn a_file_cut_after_opening_is_an_io_error_when_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("m.safetensors");
        let bytes = safetensors_bytes(&path, sample()).expect("serialises");
        std::fs::write(&path, &bytes).expect("writes");
        let lazy = read_lazy_safetensors(&path).expect("opens");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("cuts");
        // Keys sort `a` before `b`; `b` (f32, stored last) lost its tail.
        assert!(matches!(lazy["b"].read(), Err(Error::Io { .. })));
    }

    #[test]
    fn a_header_longer_than_the_file_is_a_format_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("m.safetensors");
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&path, &bytes).expect("writes");
        assert!(matches!(read_lazy_safetensors(&path), Err(Error::Format { .. })));
    }
}
