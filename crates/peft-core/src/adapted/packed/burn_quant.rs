//! Base weights kept quantized for QLoRA on a model loaded from safetensors: 8-bit in Burn's own
//! quantization (`Q8S`, a scale per block), 4-bit as two weights per byte.
//!
//! Why 4-bit is packed here rather than by Burn: Burn's CPU backend stores a `Q4S` tensor one
//! value per byte (it unpacks to `i8`), so it would take as much memory as 8-bit. [`Int4Blocks`]
//! uses the same symmetric scheme (a block of 32 weights, scale `max |w| / 7`, values in −7..=7)
//! and keeps two values per byte.

use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{FloatDType, Tensor};

use super::{PackedBase, PackedWeight};
use crate::{AdapterSites, Result, SiteMut};

/// Weights per quantization block, along a row of `d_input` weights (as GGUF's `Q8_0`/`Q4_0`).
pub const BLOCK: u8 = 32;

/// How [`quantize_base_weights`] stores each weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseQuantization {
    /// 8-bit integers, an f32 scale per block of 32 (about 0.28 of f32's memory).
    Int8,
    /// 4-bit integers, two per byte, an f32 scale per block of 32 (about 0.16 of f32's memory).
    Int4,
}

impl BaseQuantization {
    /// Burn's scheme for it.
    pub fn scheme(self) -> QuantScheme {
        let value = match self {
            BaseQuantization::Int8 => QuantValue::Q8S,
            BaseQuantization::Int4 => QuantValue::Q4S,
        };
        QuantScheme::default().with_value(value).with_store(QuantStore::PackedU32(0)).per_block([BLOCK], ScaleDtype::F32)
    }

    /// The name a run reports (`int8`).
    pub fn name(self) -> &'static str {
        match self {
            BaseQuantization::Int8 => "int8",
            BaseQuantization::Int4 => "int4",
        }
    }
}

/// A `[d_output, d_input]` weight in 4-bit blocks: per block of [`BLOCK`] weights along a row, an
/// f32 scale `s = max |w| / 7` and values `q = round(w / s)` in −7..=7, two per byte (the first
/// weight of a pair in the low nibble, stored `q + 8`); `w ≈ s · q`.
#[derive(Debug)]
pub struct Int4Blocks {
    d_output: usize,
    d_input: usize,
    scales: Vec<f32>,
    nibbles: Vec<u8>,
}

impl Int4Blocks {
    /// Quantizes `weight` (`[d_output, d_input]`, row-major f32 values).
    pub fn new(weight: &[f32], d_output: usize, d_input: usize) -> Self {
        let block = usize::from(BLOCK);
        let mut scales = Vec::with_capacity(weight.len().div_ceil(block));
        let mut codes: Vec<u8> = Vec::with_capacity(weight.len());
        for row in weight.chunks(d_input.max(1)) {
            for values in row.chunks(block) {
                let largest = values.iter().fold(0.0f32, |m, w| m.max(w.abs()));
                let scale = largest / 7.0;
                let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                scales.push(scale);
                codes.extend(values.iter().map(|w| ((w * inverse).round().clamp(-7.0, 7.0) as i8 + 8) as u8));
            }
        }
        let nibbles = codes.chunks(2).map(|pair| pair[0] | (pair.get(1).copied().unwrap_or(8) << 4)).collect();
        Int4Blocks { d_output, d_input, scales, nibbles }
    }
}

impl PackedWeight for Int4Blocks {
    fn dims(&self) -> [usize; 2] {
        [self.d_input, self.d_output]
    }

    fn format(&self) -> &str {
        "int4"
    }

    fn packed_bytes(&self) -> usize {
        self.nibbles.len() + 4 * self.scales.len()
    }

    fn dequantize(&self) -> Vec<f32> {
        let (block, n) = (usize::from(BLOCK), self.d_output * self.d_input);
        let blocks_per_row = self.d_input.div_ceil(block);
        let code = |k: usize| i8::try_from((self.nibbles[k / 2] >> (4 * (k % 2))) & 0x0f).unwrap_or(8) - 8;
        (0..n)
            .map(|k| {
                let (row, col) = (k / self.d_input, k % self.d_input);
                self.scales[row * blocks_per_row + col / block] * f32::from(code(k))
            })
            .collect()
    }
}

/// A `[d_output, d_input]` weight as a Burn quantized tensor.
#[derive(Debug)]
pub struct BurnQuantized {
    weight: Tensor<2>,
    quantization: BaseQuantization,
    bytes: usize,
}

impl BurnQuantized {
    /// Quantizes `weight` (`[d_output, d_input]`, any float type, no autodiff graph kept).
    pub fn new(weight: Tensor<2>, quantization: BaseQuantization) -> Self {
        let weight = weight.detach().cast(FloatDType::F32).quantize_dynamic(&quantization.scheme());
        let bytes = weight.to_data().as_bytes().len();
        BurnQuantized { weight, quantization, bytes }
    }
}

impl PackedWeight for BurnQuantized {
    fn dims(&self) -> [usize; 2] {
        let [d_output, d_input] = self.weight.dims();
        [d_input, d_output]
    }

    fn format(&self) -> &str {
        self.quantization.name()
    }

    fn packed_bytes(&self) -> usize {
        self.bytes
    }

    fn dequantize(&self) -> Vec<f32> {
        self.weight.clone().dequantize().into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
    }
}

/// Keeps the base weight of every linear adapter site of `model` quantized (QLoRA on any
/// model): each is quantized with `quantization` in turn and its f32 values dropped. Sites whose
/// weight is a tied copy (`lm_head` sharing the embedding) and sites already packed are left
/// alone. Returns how many layers were quantized. Call it before attaching adapters.
///
/// # Errors
/// [`crate::Error::InvalidState`] when an adapter is merged into a site (quantizing the merged
/// weight would bake the adapter in); [`crate::Error::Unsupported`] for int8 on a layer whose
/// input width is not a multiple of [`BLOCK`].
pub fn quantize_base_weights<M: AdapterSites>(model: &mut M, quantization: BaseQuantization) -> Result<usize> {
    let tied: Vec<String> = model.tied_weights().into_iter().map(|(copy, _)| copy).collect();
    let mut error = None;
    let mut count = 0;
    model.visit_sites_mut(&mut |path, site| {
        let SiteMut::Linear(layer) = site else { return };
        if error.is_some() || layer.packed.is_some() || tied.contains(&format!("{path}.weight")) {
            return;
        }
        if !layer.adapters.merged().is_empty() {
            error = Some(crate::Error::InvalidState(format!("`{path}` has a merged adapter; unmerge it before quantizing the base")));
            return;
        }
        let [d_input, d_output] = layer.dims();
        if quantization == BaseQuantization::Int8 && !d_input.is_multiple_of(usize::from(BLOCK)) {
            // Burn's block quantization needs whole blocks along each row.
            error = Some(crate::Error::Unsupported {
                what: format!("int8 quantization of `{path}` ({d_input} inputs -> {d_output})"),
                supported: format!("layers whose input width is a multiple of {BLOCK}; int4 takes any width"),
            });
            return;
        }
        let weight = layer.base_layer.weight.val().transpose();
        let packed = match quantization {
            BaseQuantization::Int8 => PackedBase::new(BurnQuantized::new(weight, quantization)),
            BaseQuantization::Int4 => {
                let [d_output, d_input] = weight.dims();
                let values = weight.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default();
                PackedBase::new(Int4Blocks::new(&values, d_output, d_input))
            }
        };
        match layer.set_packed(packed) {
            Ok(()) => count += 1,
            Err(e) => error = Some(e),
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(count),
    }
}
