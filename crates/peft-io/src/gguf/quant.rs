//! GGML tensor types and their dequantization to `f32`.
//!
//! Block formats (little-endian, `d`/`m` are f16):
//! - `Q8_0`: 32 weights as `d, q[32]: i8`; `x = d · q`.
//! - `Q4_0`: 32 weights as `d, q[16]: u8`; weight `j < 16` is the low nibble of `q[j]`, weight
//!   `j + 16` its high nibble; `x = d · (nibble − 8)`.
//! - `Q4_1`: as `Q4_0` with a minimum: `d, m, q[16]`; `x = d · nibble + m`.
//! - `Q4_K`, `Q5_K`, `Q6_K`: super-blocks of 256, see [`super::kquant`].

use half::{bf16, f16};

use super::kquant;

/// A tensor's storage type, by its GGML type id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)] // GGUF's own names (`Q4_K`)
pub enum GgmlType {
    /// 32-bit float (id 0).
    F32,
    /// 16-bit IEEE float (id 1).
    F16,
    /// 4-bit blocks of 32 with a scale (id 2).
    Q4_0,
    /// 4-bit blocks of 32 with a scale and a minimum (id 3).
    Q4_1,
    /// 8-bit blocks of 32 with a scale (id 8).
    Q8_0,
    /// 4-bit super-blocks of 256 with 6-bit sub-block scales and minimums (id 12).
    Q4_K,
    /// 5-bit super-blocks of 256 with 6-bit sub-block scales and minimums (id 13).
    Q5_K,
    /// 6-bit super-blocks of 256 with 8-bit sub-block scales (id 14).
    Q6_K,
    /// bfloat16 (id 30).
    BF16,
}

/// Every type [`GgmlType`] reads, for error messages.
pub const SUPPORTED_TYPES: &str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K";

impl GgmlType {
    /// The type with GGML id `id`, or `None` for one this crate cannot dequantize.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// Weights per block (1 for plain floats).
    pub fn block_len(self) -> u64 {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => 32,
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => kquant::SUPER_BLOCK as u64,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4_K => 144,
            GgmlType::Q5_K => 176,
            GgmlType::Q6_K => 210,
        }
    }

    /// The bytes `n` weights take, or `None` when `n` is not a whole number of blocks.
    pub fn byte_len(self, n: u64) -> Option<u64> {
        n.is_multiple_of(self.block_len()).then(|| n / self.block_len()).and_then(|b| b.checked_mul(self.block_bytes()))
    }

    /// The weights in `bytes`, which must be a whole number of blocks (checked by the caller;
    /// a partial trailing block is ignored).
    pub fn dequantize(self, bytes: &[u8]) -> Vec<f32> {
        let mut out = Vec::with_capacity(bytes.len() / self.block_bytes() as usize * self.block_len() as usize);
        self.dequantize_into(bytes, &mut out);
        out
    }

    /// [`GgmlType::dequantize`], appending to `out`.
    pub fn dequantize_into(self, bytes: &[u8], out: &mut Vec<f32>) {
        let half = |b: &[u8], at: usize| f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
        let block = self.block_bytes() as usize;
        for b in bytes.chunks_exact(block) {
            match self {
                GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                GgmlType::F16 => out.push(half(b, 0)),
                GgmlType::BF16 => out.push(bf16::from_le_bytes([b[0], b[1]]).to_f32()),
                GgmlType::Q8_0 => {
                    let d = half(b, 0);
                    out.extend(b[2..34].iter().map(|&q| d * f32::from(q as i8)));
                }
                GgmlType::Q4_0 => {
                    let d = half(b, 0);
                    let q = &b[2..18];
                    out.extend(q.iter().map(|&x| d * f32::from((x & 0x0f) as i8 - 8)));
                    out.extend(q.iter().map(|&x| d * f32::from((x >> 4) as i8 - 8)));
                }
                GgmlType::Q4_1 => {
                    let (d, m) = (half(b, 0), half(b, 2));
                    let q = &b[4..20];
                    out.extend(q.iter().map(|&x| d * f32::from(x & 0x0f) + m));
                    out.extend(q.iter().map(|&x| d * f32::from(x >> 4) + m));
                }
                GgmlType::Q4_K => kquant::q4_k(b, out),
                GgmlType::Q5_K => kquant::q5_k(b, out),
                GgmlType::Q6_K => kquant::q6_k(b, out),
            }
        }
    }

    /// The type's name as GGML spells it (`Q4_K`).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
        }
    }

    /// Whether the type stores blocks of several weights (as opposed to plain floats).
    pub fn is_block_quantized(self) -> bool {
        self.block_len() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(scale: f32, min: Option<f32>, nibbles: impl Fn(usize) -> u8) -> Vec<u8> {
        let mut b = f16::from_f32(scale).to_le_bytes().to_vec();
        if let Some(m) = min {
            b.extend(f16::from_f32(m).to_le_bytes());
        }
        b.extend((0..16).map(|j| nibbles(j) | (nibbles(j + 16) << 4)));
        b
    }

    #[test]
    fn four_bit_blocks_put_low_nibbles_first() {
        let q = block(0.5, None, |j| (j % 16) as u8);
        let x = GgmlType::Q4_0.dequantize(&q);
        let want: Vec<f32> = (0..32).map(|j| 0.5 * ((j % 16) as f32 - 8.0)).collect();
        assert_eq!(x, want);
        let q = block(0.25, Some(-1.0), |j| (15 - j % 16) as u8);
        let x = GgmlType::Q4_1.dequantize(&q);
        let want: Vec<f32> = (0..32).map(|j| 0.25 * (15 - j % 16) as f32 - 1.0).collect();
        assert_eq!(x, want);
    }

    #[test]
    fn byte_len_needs_whole_blocks() {
        assert_eq!(GgmlType::Q8_0.byte_len(64), Some(68));
        assert_eq!(GgmlType::Q4_1.byte_len(33), None);
        assert_eq!(GgmlType::F32.byte_len(u64::MAX), None, "overflow is not a length");
    }
}
