//! The header of a GGUF file: magic, version, metadata and tensor index, every length checked
//! against the bytes left in the file before anything is allocated.

use indexmap::IndexMap;
use peft_core::{Error, Result};
use std::io::Read;
use std::path::Path;

use super::value::{Value, ValueType};

/// A GGUF array may hold arrays; deeper nesting than this is taken as a hostile file.
const MAX_DEPTH: usize = 8;

/// GGML tensors have at most four dimensions.
pub(crate) const MAX_DIMS: u32 = 4;

/// A little-endian reader that knows how many bytes the file has left.
pub(crate) struct Reader<'a, R> {
    inner: R,
    pub(crate) pos: u64,
    len: u64,
    path: &'a Path,
}

impl<'a, R: Read> Reader<'a, R> {
    pub(crate) fn new(inner: R, len: u64, path: &'a Path) -> Self {
        Reader { inner, pos: 0, len, path }
    }

    /// An [`Error::Format`] naming the file and the byte offset.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> Error {
        format_error(self.path, format!("{message} (at byte {})", self.pos))
    }

    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Fails unless `n` more bytes are in the file.
    fn need(&self, n: u64, what: &str) -> Result<()> {
        if n > self.left() {
            return Err(self.error(format!("{what} needs {n} bytes but the file has {} left; it is truncated or corrupt", self.left())));
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        self.need(N as u64, what)?;
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b).map_err(|e| Error::io("cannot read", self.path, e))?;
        self.pos += N as u64;
        Ok(b)
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        self.bytes(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        self.bytes(what).map(u64::from_le_bytes)
    }

    /// A count that must fit in the file at `min_size` bytes per item.
    pub(crate) fn count(&mut self, min_size: u64, what: &str) -> Result<u64> {
        let n = self.u64(what)?;
        self.need(n.saturating_mul(min_size), &format!("{what} = {n}"))?;
        Ok(n)
    }

    pub(crate) fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        self.need(n, &format!("the {n}-byte string {what}"))?;
        let mut b = vec![0u8; n as usize];
        self.inner.read_exact(&mut b).map_err(|e| Error::io("cannot read", self.path, e))?;
        self.pos += n;
        String::from_utf8(b).map_err(|_| self.error(format!("{what} is not UTF-8")))
    }

    fn value_type(&mut self, what: &str) -> Result<ValueType> {
        let tag = self.u32(what)?;
        ValueType::from_tag(tag).ok_or_else(|| self.error(format!("{what} has value type {tag}, which GGUF does not define (0..=12)")))
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.bytes::<1>(key)?[0]),
            ValueType::I8 => Value::I8(self.bytes::<1>(key)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.bytes(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.bytes(key)?)),
            ValueType::U32 => Value::U32(self.u32(key)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.bytes(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.bytes(key)?)),
            ValueType::Bool => match self.bytes::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.error(format!("`{key}` is a BOOL holding {b}, not 0 or 1"))),
            },
            ValueType::String => Value::String(self.string(&format!("value of `{key}`"))?),
            ValueType::U64 => Value::U64(self.u64(key)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.bytes(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.bytes(key)?)),
            ValueType::Array => {
                if depth >= MAX_DEPTH {
                    return Err(self.error(format!("`{key}` nests arrays deeper than {MAX_DEPTH}")));
                }
                let elem = self.value_type(&format!("element type of `{key}`"))?;
                let n = self.count(elem.min_size(), &format!("length of array `{key}`"))?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }

    /// `n` key/value pairs; a repeated key is an error.
    pub(crate) fn metadata(&mut self, n: u64) -> Result<IndexMap<String, Value>> {
        let mut out = IndexMap::new();
        for i in 0..n {
            let key = self.string(&format!("key of metadata entry {i}"))?;
            let ty = self.value_type(&format!("type of `{key}`"))?;
            let value = self.value(ty, &key, 0)?;
            if out.insert(key.clone(), value).is_some() {
                return Err(self.error(format!("metadata key `{key}` appears twice")));
            }
        }
        Ok(out)
    }
}

/// An [`Error::Format`] for a GGUF file.
pub(crate) fn format_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Format { path: path.into(), format: "GGUF", message: message.into() }
}
