//! Rotary position embeddings (RoPE) with the scalings transformers writes in `config.json`.

use burn::tensor::{Device, Tensor, TensorData};

/// How the rotary frequencies are rescaled for longer contexts (`rope_type` in `config.json`).
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// `inv_freq_i = theta^(-2i / head_dim)`, unscaled.
    Default,
    /// Positions divided by `factor` (every frequency divided by it).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's scaling: low frequencies divided by `factor`, high ones kept, a smooth blend
    /// between the two wavelength bounds `original_max_position_embeddings / {low,high}_freq_factor`.
    Llama3 {
        /// The divisor for long wavelengths.
        factor: f64,
        /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are divided.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: f64,
    },
}

/// The rotation angles of RoPE: `x' = x cos(p ω) + rotate_half(x) sin(p ω)` with
/// `rotate_half([x1, x2]) = [-x2, x1]` over the two halves of each head (transformers' layout).
///
/// Not a module: the frequencies are derived from the config and never trained.
#[derive(Clone, Debug, PartialEq)]
pub struct RotaryEmbedding {
    /// `ω_i` for `i < head_dim / 2`, after scaling.
    pub inv_freq: Vec<f32>,
    /// Width of a head; even.
    pub head_dim: usize,
}

impl RotaryEmbedding {
    /// The frequencies `ω_i = theta^(-2i / head_dim)`, rescaled by `scaling`.
    pub fn new(head_dim: usize, theta: f64, scaling: &RopeScaling) -> Self {
        let half = head_dim / 2;
        let inv_freq = (0..half).map(|i| {
            let base = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
            scale(base, scaling) as f32
        });
        RotaryEmbedding { inv_freq: inv_freq.collect(), head_dim }
    }

    /// `cos(p ω)` and `sin(p ω)` for positions `start..start + len`, each frequency twice
    /// (`[ω_0 .. ω_{d/2-1}, ω_0 .. ω_{d/2-1}]`), on `device`.
    ///
    /// # Shapes
    /// - outputs: `[1, 1, len, head_dim]` each
    pub fn cos_sin(&self, start: usize, len: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let positions: Vec<usize> = (start..start + len).collect();
        self.cos_sin_at(&positions, 1, len, device)
    }

    /// [`RotaryEmbedding::cos_sin`] at explicit positions, one row of `len` per batch row (left
    /// padding shifts each row's positions, as transformers' `generate` does).
    ///
    /// # Shapes
    /// - `positions`: `batch * len` values, row-major
    /// - outputs: `[batch, 1, len, head_dim]` each
    pub fn cos_sin_at(&self, positions: &[usize], batch: usize, len: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let mut cos = Vec::with_capacity(positions.len() * self.head_dim);
        let mut sin = Vec::with_capacity(positions.len() * self.head_dim);
        for &p in positions {
            for _ in 0..2 {
                for w in &self.inv_freq {
                    // transformers multiplies in float32: keep that rounding.
                    let angle = f64::from(*w * p as f32);
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let shape = [batch, 1, len, self.head_dim];
        let cos = Tensor::from_data(TensorData::new(cos, shape), device);
        let sin = Tensor::from_data(TensorData::new(sin, shape), device);
        (cos, sin)
    }

    /// Rotates queries or keys by the angles of [`RotaryEmbedding::cos_sin`].
    ///
    /// # Shapes
    /// - `x`: `[batch, heads, len, head_dim]`
    /// - `cos`, `sin`: `[1 or batch, 1, len, head_dim]`
    /// - output: as `x`
    pub fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let d = x.dims()[3];
        let half = d / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, d - half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        // The angles are computed in f32; a half-precision model rotates in its own type, as
        // transformers casts `cos` and `sin` to the queries' type.
        let dtype = x.dtype();
        x * cos.clone().cast(dtype) + rotated * sin.clone().cast(dtype)
    }
}

fn scale(inv_freq: f64, scaling: &RopeScaling) -> f64 {
    match *scaling {
        RopeScaling::Default => inv_freq,
        RopeScaling::Linear { factor } => inv_freq / factor,
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
            let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
            if wavelen < old / high_freq_factor {
                inv_freq
            } else if wavelen > old / low_freq_factor {
                inv_freq / factor
            } else {
                let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_keeps_high_and_divides_low_frequencies() {
        let scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 16.0,
        };
        let plain = RotaryEmbedding::new(8, 10000.0, &RopeScaling::Default);
        let scaled = RotaryEmbedding::new(8, 10000.0, &scaling);
        // Wavelengths 2π, 62.8, 628, 6283 against bounds 4 and 16: the first is blended, the rest
        // divided by 8.
        let s = (16.0 / (2.0 * std::f32::consts::PI) - 1.0) / 3.0;
        assert!((scaled.inv_freq[0] - ((1.0 - s) / 8.0 + s)).abs() < 1e-6);
        for i in 1..4 {
            assert!((scaled.inv_freq[i] - plain.inv_freq[i] / 8.0).abs() < 1e-9);
        }
        let linear = RotaryEmbedding::new(8, 10000.0, &RopeScaling::Linear { factor: 2.0 });
        assert!((linear.inv_freq[1] - plain.inv_freq[1] / 2.0).abs() < 1e-9);
    }

    #[test]
    fn rotation_keeps_norms() {
        let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let rope = RotaryEmbedding::new(4, 10000.0, &RopeScaling::Default);
        let (cos, sin) = rope.cos_sin(3, 2, &device);
        let x = Tensor::<4>::from_floats([[[[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]]]], &device);
        let y = RotaryEmbedding::apply(x.clone(), &cos, &sin);
        let norms = |t: Tensor<4>| t.square().sum_dim(3).into_data().try_to_vec::<f32>().expect("succeeds");
        for (a, b) in norms(x).iter().zip(norms(y)) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
