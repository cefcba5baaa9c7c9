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
