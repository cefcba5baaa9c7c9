//! Base weights kept in Burn's own quantization schemes (8- and 4-bit symmetric, a scale per
//! block), for QLoRA on a model loaded from safetensors.

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
    /// 4-bit integers, an f32 scale per block of 32 (about 0.16 of f32's memory).
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
/// weight would bake the adapter in).
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
        let weight = layer.base_layer.weight.val().transpose();
        let packed = PackedBase::new(BurnQuantized::new(weight, quantization));
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
