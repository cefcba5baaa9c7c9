//! The K-quant block formats (super-blocks of 256 weights, llama.cpp's `Q4_K`, `Q5_K`, `Q6_K`),
//! which most GGUF files on the Hub use (`Q4_K_M` mixes Q4_K and Q6_K).
//!
//! Layouts (little-endian; `d`, `dmin` are f16):
//! - `Q4_K` (144 bytes): `d, dmin, scales[12], qs[128]`. Eight sub-blocks of 32 weights, each with
//!   a 6-bit scale `sc` and 6-bit minimum `m` packed in `scales` (see [`scale_min`]); weight
//!   `x = d·sc·q − dmin·m`, `q` a nibble. The 64 weights of sub-blocks `2k, 2k+1` share 32 bytes of
//!   `qs`: the low nibbles are sub-block `2k`, the high ones `2k+1`.
//! - `Q5_K` (176 bytes): `d, dmin, scales[12], qh[32], qs[128]`: as `Q4_K` with a fifth bit per
//!   weight in `qh` (bit `2k` of `qh[l]` for sub-block `2k`, bit `2k+1` for `2k+1`).
//! - `Q6_K` (210 bytes): `ql[128], qh[64], scales[16]: i8, d`. Sixteen sub-blocks of 16 weights;
//!   `x = d·scale·(q − 32)` with `q` six bits: four from `ql`, two from `qh`. Each half (128
//!   weights) takes 64 bytes of `ql` and 32 of `qh`: weight `l + 32i` (`i` in 0..4, `l` in 0..32)
//!   is the low (`i < 2`) or high (`i ≥ 2`) nibble of `ql[l + 32·(i mod 2)]` with bits `2i, 2i+1`
//!   of `qh[l]` on top, scaled by `scales[l/16 + 2i]`.

use half::f16;

/// Weights per K-quant super-block.
pub const SUPER_BLOCK: usize = 256;

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) in the 12 packed bytes of a Q4_K/Q5_K
/// block: sub-blocks 0..4 keep theirs in the low six bits of bytes `j` and `j + 4`; sub-blocks
/// 4..8 have four low bits in byte `j + 4` (scale low nibble, minimum high nibble) and their two
/// high bits in the top bits of bytes `j − 4` (scale) and `j` (minimum).
fn scale_min(scales: &[u8], j: usize) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        ((scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4))
    };
    (f32::from(sc), f32::from(m))
}

/// One Q4_K block (144 bytes) to 256 weights.
pub fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let scales = &b[4..16];
    for (pair, qs) in b[16..144].chunks_exact(32).enumerate() {
        let (sc_lo, m_lo) = scale_min(scales, 2 * pair);
        let (sc_hi, m_hi) = scale_min(scales, 2 * pair + 1);
        out.extend(qs.iter().map(|&q| d * sc_lo * f32::from(q & 0x0f) - dmin * m_lo));
        out.extend(qs.iter().map(|&q| d * sc_hi * f32::from(q >> 4) - dmin * m_hi));
    }
}

/// One Q5_K block (176 bytes) to 256 weights.
pub fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    for (pair, qs) in b[48..176].chunks_exact(32).enumerate() {
        let (sc_lo, m_lo) = scale_min(scales, 2 * pair);
        let (sc_hi, m_hi) = scale_min(scales, 2 * pair + 1);
        let (bit_lo, bit_hi) = (1u8 << (2 * pair), 1u8 << (2 * pair + 1));
        let fifth = |h: u8, bit: u8| if h & bit != 0 { 16.0 } else { 0.0 };
        out.extend(qs.iter().zip(qh).map(|(&q, &h)| d * sc_lo * (f32::from(q & 0x0f) + fifth(h, bit_lo)) - dmin * m_lo));
        out.extend(qs.iter().zip(qh).map(|(&q, &h)| d * sc_hi * (f32::from(q >> 4) + fifth(h, bit_hi)) - dmin * m_hi));
    }
}

/// One Q6_K block (210 bytes) to 256 weights.
pub fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let d = half(b, 208);
    let start = out.len();
    out.resize(start + SUPER_BLOCK, 0.0);
    let y = &mut out[start..];
    for half_block in 0..2 {
        let ql = &b[64 * half_block..64 * half_block + 64];
        let qh = &b[128 + 32 * half_block..128 + 32 * half_block + 32];
        let scales = &b[192 + 8 * half_block..192 + 8 * half_block + 8];
        for l in 0..32 {
            for i in 0..4 {
                let low = ql[l + 32 * (i % 2)];
                let nibble = if i < 2 { low & 0x0f } else { low >> 4 };
                let q = i16::from(nibble | (((qh[l] >> (2 * i)) & 3) << 4)) - 32;
                let scale = f32::from(scales[l / 16 + 2 * i] as i8);
                y[128 * half_block + 32 * i + l] = d * scale * f32::from(q);
            }
        }
    }
}
