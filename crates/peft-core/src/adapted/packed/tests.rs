//! The packed matmul, its backward, and the quantized weight formats.

#[cfg(test)] // (tidy: everything below is test code)
use super::*;
use burn::tensor::{Distribution, Tolerance};

/// Int8 rows with one scale per row: a toy block format, enough to test the operation.
#[derive(Debug)]
struct RowInt8 {
    d_input: usize,
    d_output: usize,
    scales: Vec<f32>,
    values: Vec<i8>,
}

impl RowInt8 {
    fn seeded(d_input: usize, d_output: usize) -> Self {
        let values = (0..d_input * d_output).map(|i| ((i * 37 + 11) % 255) as i16 - 127).map(|v| v as i8).collect();
        let scales = (0..d_output).map(|o| 0.01 + o as f32 * 0.003).collect();
        RowInt8 { d_input, d_output, scales, values }
    }
}

impl PackedWeight for RowInt8 {
    fn dims(&self) -> [usize; 2] {
        [self.d_input, self.d_output]
    }
    fn format(&self) -> &str {
        "row-int8"
    }
    fn packed_bytes(&self) -> usize {
        self.values.len() + 4 * self.scales.len()
    }
    fn dequantize(&self) -> Vec<f32> {
        self.values.iter().enumerate().map(|(i, &q)| self.scales[i / self.d_input] * f32::from(q)).collect()
    }
}

fn devices() -> Vec<Device> {
    vec![Device::flex(), Device::flex().autodiff()]
}

#[test]
fn packed_matmul_equals_the_dequantized_product() {
    for device in devices() {
        let packed = PackedBase::new(RowInt8::seeded(24, 10));
        let x = Tensor::<2>::random([5, 24], Distribution::Normal(0.0, 1.0), &device);
        let expected = x.clone().matmul(packed.dequantized(&device));
        let got = packed.matmul(x);
        assert_eq!(got.dims(), [5, 10]);
        got.into_data().assert_approx_eq::<f32>(&expected.into_data(), Tolerance::default());
    }
}

#[test]
fn the_input_gradient_is_the_dequantized_weights() {
    let device = Device::flex().autodiff();
    let packed = PackedBase::new(RowInt8::seeded(16, 6));
    let x = Tensor::<2>::random([3, 16], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let upstream = Tensor::<2>::random([3, 6], Distribution::Normal(0.0, 1.0), &device);
    let grads = (packed.matmul(x.clone()) * upstream.clone()).sum().backward();
    let got = x.grad(&grads).expect("x takes a gradient");

    let x2 = x.clone().detach().require_grad();
    let grads2 = (x2.clone().matmul(packed.dequantized(&device)) * upstream).sum().backward();
    let expected = x2.grad(&grads2).expect("x takes a gradient");
    got.into_data().assert_approx_eq::<f32>(&expected.into_data(), Tolerance::default());
}

#[test]
fn the_flex_backend_runs_the_extension() {
    assert!(op::supported(&Device::flex()) && op::supported(&Device::flex().autodiff()));
}

#[test]
fn burn_quantized_weights_dequantize_close_to_the_original_in_a_fraction_of_the_memory() {
    let device = Device::flex();
    let (d_output, d_input) = (48, 96);
    let weight = Tensor::<2>::random([d_output, d_input], Distribution::Normal(0.0, 0.05), &device);
    let original = weight.clone().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
    let largest = original.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let int4 = || -> Box<dyn PackedWeight> { Box::new(Int4Blocks::new(&original, d_output, d_input)) };
    let int8 = || -> Box<dyn PackedWeight> { Box::new(BurnQuantized::new(weight.clone(), BaseQuantization::Int8)) };
    for (packed, bits, bytes_per_weight) in [(int8(), 8.0, 1.0), (int4(), 4.0, 0.5)] {
        let quantization = packed.format().to_string();
        let scales = 4.0 * (d_output * d_input) as f64 / f64::from(BLOCK);
        assert_eq!(packed.packed_bytes() as f64, (d_output * d_input) as f64 * bytes_per_weight + scales, "{quantization}");
        assert_eq!(packed.dims(), [d_input, d_output]);
        let f32_bytes = d_output * d_input * 4;
        assert!(packed.packed_bytes() * 3 < f32_bytes, "{quantization}: {} bytes", packed.packed_bytes());
        let back = packed.dequantize();
        assert_eq!(back.len(), original.len());
        // Symmetric rounding: at most half a step of the block's largest value / (2^(bits-1) - 1).
        let step = largest / (2f32.powf(bits - 1.0) - 1.0);
        let worst = back.iter().zip(&original).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst > 0.0 && worst <= 0.51 * step, "{quantization}: off by {worst}, step {step}");
    }
}

#[test]
fn int4_blocks_round_trip_rows_that_are_not_whole_blocks() {
    // 37 inputs: a block of 32 and one of 5 per row; 3 rows, so 111 values (an odd count).
    let (d_output, d_input) = (3, 37);
    let values: Vec<f32> = (0..d_output * d_input).map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.1).collect();
    let packed = Int4Blocks::new(&values, d_output, d_input);
    assert_eq!(packed.packed_bytes(), 56 + 4 * 6, "ceil(111 / 2) bytes and two scales per row");
    let back = packed.dequantize();
    for (row, (got, want)) in back.chunks(d_input).zip(values.chunks(d_input)).enumerate() {
        for (block, (g, w)) in got.chunks(32).zip(want.chunks(32)).enumerate() {
            let step = w.iter().fold(0.0f32, |m, x| m.max(x.abs())) / 7.0;
            let worst = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst <= 0.5 * step + 1e-6, "row {row}, block {block}: off by {worst}, step {step}");
        }
    }
}

#[derive(burn::module::Module, Debug)]
struct OddWidth {
    proj: crate::AdaptedLinear,
}

impl crate::AdapterSites for OddWidth {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, crate::SiteMut<'_>)) {
        f("proj", crate::SiteMut::Linear(&mut self.proj));
    }
}

#[test]
fn int8_refuses_a_layer_whose_width_is_not_whole_blocks_and_int4_takes_it() {
    let device = Device::flex();
    let mut model = OddWidth { proj: crate::AdaptedLinear::new(37, 5, true, &device) };
    let err = quantize_base_weights(&mut model, BaseQuantization::Int8).expect_err("37 is not a multiple of 32");
    assert!(matches!(&err, crate::Error::Unsupported { what, .. } if what.contains("`proj`")), "{err}");
    assert!(model.proj.packed.is_none(), "a refused quantization changes nothing");
    assert_eq!(quantize_base_weights(&mut model, BaseQuantization::Int4).expect("int4 takes any width"), 1);
    let x = Tensor::<3>::ones([1, 2, 37], &device);
    assert_eq!(model.proj.forward(x).dims(), [1, 2, 5]);
}
