//! A GGUF weight matrix kept in its blocks, for a frozen base layer (QLoRA): see
//! [`peft_core::adapted::packed`].

use peft_core::adapted::packed::PackedWeight;
use peft_core::{Error, Result};

use super::{GgmlType, GgufFile, reader::format_error};

/// A `[d_output, d_input]` GGUF matrix in its file's block format; each output row's blocks are
/// contiguous, so rows can be reordered without dequantizing.
#[derive(Debug)]
pub struct GgufPacked {
    ggml_type: GgmlType,
    d_output: usize,
    d_input: usize,
    bytes: Vec<u8>,
}

impl GgufPacked {
    /// Reads tensor `name`, a 2-D matrix, without dequantizing it.
    ///
    /// # Errors
    /// As [`GgufFile::read_raw`], and [`Error::Format`] when the tensor is not 2-D.
    pub fn read(file: &GgufFile, name: &str) -> Result<Self> {
        let (info, bytes) = file.read_raw(name)?;
        let [d_output, d_input] = info.shape[..] else {
            return Err(format_error(file.path(), format!("tensor `{name}` of shape {:?} is not a matrix", info.shape)));
        };
        Ok(GgufPacked { ggml_type: info.ggml_type, d_output, d_input, bytes })
    }

    /// The block format.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// The matrix with its rows reordered: row `i` of the result is row `order[i]` of this one.
    ///
    /// # Errors
    /// [`Error::InvalidState`] when `order` is not a permutation of the rows.
    pub fn permute_rows(self, order: &[usize]) -> Result<Self> {
        let mut seen = vec![false; self.d_output];
        let valid = order.len() == self.d_output && order.iter().all(|&r| r < self.d_output && !std::mem::replace(&mut seen[r], true));
        if !valid {
            return Err(Error::InvalidState(format!("a row order of {} entries is not a permutation of {} rows", order.len(), self.d_output)));
        }
        let row = self.bytes.len() / self.d_output.max(1);
        let mut bytes = Vec::with_capacity(self.bytes.len());
        for &from in order {
            bytes.extend_from_slice(&self.bytes[from * row..(from + 1) * row]);
        }
        Ok(GgufPacked { bytes, ..self })
    }
}

impl PackedWeight for GgufPacked {
    fn dims(&self) -> [usize; 2] {
        [self.d_input, self.d_output]
    }

    fn format(&self) -> &str {
        self.ggml_type.name()
    }

    fn packed_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Rows are dequantized on every core: this runs twice per layer and training step.
    fn dequantize(&self) -> Vec<f32> {
        if self.d_output == 0 || self.d_input == 0 {
            return Vec::new();
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from).min(self.d_output.max(1));
        let row = self.bytes.len() / self.d_output.max(1);
        let rows_per_thread = self.d_output.div_ceil(threads.max(1)).max(1);
        let mut out = vec![0f32; self.d_output * self.d_input];
        std::thread::scope(|scope| {
            let chunks = self.bytes.chunks(rows_per_thread * row).zip(out.chunks_mut(rows_per_thread * self.d_input));
            for (bytes, values) in chunks {
                scope.spawn(move || {
                    let mut buffer = Vec::with_capacity(values.len());
                    self.ggml_type.dequantize_into(bytes, &mut buffer);
                    values.copy_from_slice(&buffer);
                });
            }
        });
        out
    }
}
