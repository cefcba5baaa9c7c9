//! Reading the committed Python fixtures (`fixtures/`).

use burn::tensor::{Device, Int, Tensor, TensorData};
use peft::io::tensors::{TensorMap, read_safetensors};
use std::path::PathBuf;

/// `fixtures/` at the workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// One case: its folder and its `expected.safetensors`.
pub struct Case {
    pub dir: PathBuf,
    pub expected: TensorMap,
    pub meta: serde_json::Value,
}

impl Case {
    pub fn load(name: &str) -> Case {
        let dir = root().join("cases").join(name);
        let expected = read_safetensors(&dir.join("expected.safetensors")).expect("expected.safetensors");
        let meta = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).expect("case.json")).expect("json");
        Case { dir, expected, meta }
    }

    pub fn adapter(&self) -> PathBuf {
        self.dir.join("adapter")
    }

    pub fn ints(&self, key: &str, device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(self.expected[key].clone(), device)
    }

    pub fn floats<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        Tensor::from_data(self.expected[key].clone(), device)
    }

    pub fn has(&self, key: &str) -> bool {
        self.expected.contains_key(key)
    }
}

/// Largest absolute difference between a tensor and expected data of the same shape.
pub fn max_abs_diff(actual: TensorData, expected: &TensorData) -> f32 {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    let a: Vec<f32> = actual.convert::<f32>().try_into_vec().expect("f32");
    let b: Vec<f32> = expected.clone().convert::<f32>().try_into_vec().expect("f32");
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
