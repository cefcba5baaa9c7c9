//! GGUF files (llama.cpp's format, versions 2 and 3): metadata, tensor index, and tensors
//! dequantized to `f32` ([`GgmlType`] lists the block formats read).
//!
//! [`GgufFile::open`] reads only the header; [`GgufFile::read_tensor`] then reads one tensor's
//! byte range, so a model is never held twice in memory. Every length and offset in the header
//! is checked against the file's size first: a truncated or hostile file gives
//! [`Error::Format`] naming the file and what is wrong, never a panic or a huge allocation.
//!
//! ```no_run
//! use peft_io::gguf::GgufFile;
//! # fn main() -> peft_core::Result<()> {
//! let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let layers = file.get("llama.block_count").and_then(|v| v.as_u64());
//! let embedding = file.read_tensor("token_embd.weight")?; // [vocab, hidden], f32
//! # let _ = (layers, embedding);
//! # Ok(())
//! # }
//! ```

mod kquant;
mod packed;
mod quant;
mod reader;
mod value;

pub use packed::GgufPacked;
pub use quant::{GgmlType, SUPPORTED_TYPES};
pub use value::{Value, ValueType};

use burn::tensor::TensorData;
use indexmap::IndexMap;
use peft_core::{Error, Result};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use reader::{MAX_DIMS, Reader, format_error};

/// The four bytes a GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";

/// Tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// One entry of the tensor index.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// The shape in PyTorch order, outermost first (GGUF stores it innermost first).
    pub shape: Vec<usize>,
    /// How its elements are stored.
    pub ggml_type: GgmlType,
    /// Where its bytes start, from the start of the file.
    pub offset: u64,
    /// How many bytes it takes.
    pub byte_len: u64,
}

/// A GGUF file's header, with the path to read tensors from.
#[derive(Clone, Debug)]
pub struct GgufFile {
    path: PathBuf,
    /// The format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: IndexMap<String, Value>,
    /// The tensor index in file order.
    pub tensors: Vec<GgufTensorInfo>,
    /// Alignment of the tensor data (`general.alignment`, default 32).
    pub alignment: u64,
    /// Where the tensor data section starts.
    pub data_offset: u64,
}

impl GgufFile {
    /// Reads the header of a GGUF file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Format`] naming the file for a wrong
    /// magic, a version other than 2 or 3, a big-endian file, a truncated header, a tensor with
    /// an unsupported type or more than 4 dimensions, a tensor not inside the file, or a
    /// misaligned offset.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
        let len = file.metadata().map_err(|e| Error::io("cannot read", path, e))?.len();
        Self::read_header(BufReader::new(file), len, path)
    }

    /// Parses the header of a GGUF file already in memory; `path` names the source in errors
    /// and is where [`GgufFile::read_tensor`] would read from (use
    /// [`GgufFile::read_tensor_from`] with the same bytes instead).
    ///
    /// # Errors
    /// As [`GgufFile::open`], except that no file is opened.
    pub fn from_bytes(bytes: &[u8], path: impl AsRef<Path>) -> Result<Self> {
        Self::read_header(bytes, bytes.len() as u64, path.as_ref())
    }

    /// The header from `reader`, which holds `len` bytes in all.
    fn read_header<R: Read>(reader: R, len: u64, path: &Path) -> Result<Self> {
        let mut r = Reader::new(reader, len, path);

        let magic = r.u32("the magic").map_err(|_| format_error(path, "too short to be a GGUF file"))?;
        if &magic.to_le_bytes() != MAGIC {
            return Err(format_error(path, format!("starts with {:?}, not the GGUF magic \"GGUF\"", magic.to_le_bytes())));
        }
        let version = r.u32("the version")?;
        if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            return Err(format_error(path, "a big-endian GGUF file; only little-endian files are supported"));
        }
        if !(2..=3).contains(&version) {
            return Err(format_error(path, format!("GGUF version {version}; supported: 2, 3")));
        }
        // A tensor entry takes at least 8 (name) + 4 (dims) + 4 (type) + 8 (offset) bytes.
        let n_tensors = r.count(24, "the tensor count")?;
        let n_kv = r.count(12, "the metadata count")?;
        let metadata = r.metadata(n_kv)?;
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                _ => return Err(format_error(path, format!("general.alignment is {v:?}; it must be a power of two"))),
            },
        };

        let mut raw = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            raw.push(read_tensor_info(&mut r, i)?);
        }
        let data_offset = r.pos.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        let mut names = std::collections::HashSet::with_capacity(raw.len());
        for (name, shape, ty, rel, byte_len) in raw {
            // Tensors are looked up by name: a second one of the same name would never be read.
            if !names.insert(name.clone()) {
                return Err(format_error(path, format!("tensor `{name}` appears twice in the tensor index")));
            }
            let offset = data_offset.checked_add(rel).filter(|_| rel % alignment == 0);
            let Some(offset) = offset.filter(|o| o.checked_add(byte_len).is_some_and(|end| end <= len)) else {
                let message = format!(
                    "tensor `{name}` ({byte_len} bytes at data offset {rel}) is misaligned (alignment {alignment}) \
                     or ends past the end of the file ({len} bytes); the file is truncated or corrupt"
                );
                return Err(format_error(path, message));
            };
            tensors.push(GgufTensorInfo { name, shape, ggml_type: ty, offset, byte_len });
        }
        Ok(GgufFile { path: path.into(), version, metadata, tensors, alignment, data_offset })
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A tensor's index entry by name.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// One tensor, dequantized to `f32`, shaped in PyTorch order (a linear weight is
    /// `[d_output, d_input]`).
    ///
    /// Fails with [`Error::MissingTensor`] naming the file when there is no such tensor and
    /// [`Error::Io`] when its bytes cannot be read.
    pub fn read_tensor(&self, name: &str) -> Result<TensorData> {
        let (info, bytes) = self.read_raw(name)?;
        Ok(decode(info, &bytes))
    }

    /// One tensor's stored bytes, as they are in the file (blocks left packed), with its entry.
    ///
    /// Fails as [`GgufFile::read_tensor`].
    pub fn read_raw(&self, name: &str) -> Result<(&GgufTensorInfo, Vec<u8>)> {
        let info = self.tensor_info(name).ok_or_else(|| self.missing(name))?;
        let mut file = File::open(&self.path).map_err(|e| Error::io("cannot open", &self.path, e))?;
        file.seek(SeekFrom::Start(info.offset)).map_err(|e| Error::io("cannot read", &self.path, e))?;
        let mut bytes = vec![0u8; info.byte_len as usize];
        file.read_exact(&mut bytes).map_err(|e| Error::io("cannot read", &self.path, e))?;
        Ok((info, bytes))
    }

    /// One tensor as [`GgufFile::read_tensor`] gives it, taken from `bytes`, the whole file in
    /// memory (the bytes [`GgufFile::from_bytes`] parsed).
    ///
    /// Fails with [`Error::MissingTensor`] when there is no such tensor and [`Error::Format`]
    /// when its bytes lie past the end of `bytes`.
    pub fn read_tensor_from(&self, bytes: &[u8], name: &str) -> Result<TensorData> {
        let info = self.tensor_info(name).ok_or_else(|| self.missing(name))?;
        let range = usize::try_from(info.offset).ok().zip(usize::try_from(info.byte_len).ok());
        let Some(raw) = range.and_then(|(start, n)| bytes.get(start..start.checked_add(n)?)) else {
            let message = format!("tensor `{name}` ({} bytes at {}) lies past the end of the {} bytes given", info.byte_len, info.offset, bytes.len());
            return Err(format_error(&self.path, message));
        };
        Ok(decode(info, raw))
    }

    fn missing(&self, name: &str) -> Error {
        Error::MissingTensor {
            key: name.into(),
            file: self.path.clone(),
            fix: "the file does not hold this tensor; check that it is a model of the expected architecture".into(),
        }
    }
}

/// A tensor's bytes (checked at [`GgufFile::open`] to be whole blocks for its shape) as `f32`.
fn decode(info: &GgufTensorInfo, bytes: &[u8]) -> TensorData {
    TensorData::new(info.ggml_type.dequantize(bytes), info.shape.clone())
}

/// `(name, shape, type, offset relative to the data section, byte length)` of tensor `i`.
fn read_tensor_info<R: Read>(r: &mut Reader<'_, R>, i: u64) -> Result<(String, Vec<usize>, GgmlType, u64, u64)> {
    let name = r.string(&format!("name of tensor {i}"))?;
    let n_dims = r.u32(&format!("dimension count of `{name}`"))?;
    if n_dims > MAX_DIMS {
        return Err(r.error(format!("tensor `{name}` has {n_dims} dimensions; GGML allows at most {MAX_DIMS}")));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(r.u64(&format!("shape of `{name}`"))?);
    }
    let id = r.u32(&format!("type of `{name}`"))?;
    let ty = GgmlType::from_id(id)
        .ok_or_else(|| r.error(format!("tensor `{name}` has GGML type {id}; supported: {SUPPORTED_TYPES}")))?;
    let rel = r.u64(&format!("offset of `{name}`"))?;
    let count = dims.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d));
    // Blocks run along the innermost dimension, so each row must be whole blocks.
    let whole_rows = dims.first().is_none_or(|d| d.is_multiple_of(ty.block_len()));
    let byte_len = count.filter(|_| whole_rows).and_then(|n| ty.byte_len(n));
    let Some(byte_len) = byte_len else {
        return Err(r.error(format!("tensor `{name}` of shape {dims:?} is not a whole number of {ty:?} blocks or is too large")));
    };
    let shape = dims.iter().rev().map(|d| usize::try_from(*d).unwrap_or(usize::MAX)).collect();
    Ok((name, shape, ty, rel, byte_len))
}

#[cfg(test)]
mod tests;
