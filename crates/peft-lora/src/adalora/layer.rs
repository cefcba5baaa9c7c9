//! AdaLoRA on a linear layer: LoRA in SVD form, `B E A`.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::module::linear;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use peft_core::{LinearAdapter, LowRank, Result};

/// What the Python library adds to `ranknum` before dividing by it.
pub(crate) const RANKNUM_EPS: f64 = 1e-5;

/// AdaLoRA on a linear layer: `h = W0 x + (dropout(x) (A ⊙ E)ᵀ Bᵀ) * scaling / (ranknum + 1e-5)`.
///
/// `A` holds the right singular vectors, `E` the singular values (one per rank, the entries the
/// rank allocator zeroes), `B` the left singular vectors. Unlike LoRA, the factors are kept in the
/// Python library's orientation (`lora_A: [r, d_input]`, `lora_E: [r, 1]`, `lora_B: [d_output, r]`):
/// the allocator works per rank, which is a row of `A` and `E` and a column of `B`.
///
/// `scaling` is `lora_alpha` itself (not `alpha / r`: the division is by `ranknum`), and
/// `ranknum` is the rank the layer was created with (`init_r`). A layer loaded with fewer ranks
/// from a `rank_pattern` keeps `ranknum = init_r`, as the Python library copies it over when it
/// resizes, so its output is unchanged.
#[derive(Module, Debug)]
pub struct AdaLoraLinear {
    /// `A`, shape `[r, d_input]`.
    pub lora_a: Param<Tensor<2>>,
    /// `E`, shape `[r, 1]`.
    pub lora_e: Param<Tensor<2>>,
    /// `B`, shape `[d_output, r]`.
    pub lora_b: Param<Tensor<2>>,
    /// Dropout on the adapter's input.
    pub dropout: Dropout,
    /// The numerator of the scale (`lora_alpha`, or the rank when `lora_alpha <= 0`).
    pub scaling: f64,
    /// The denominator of the scale without its `1e-5` (the initial rank).
    pub ranknum: f64,
    /// The ranks the allocator kept (one flag per row of `A`), applied when the adapter is
    /// exported; `None` exports every rank.
    #[module(skip)]
    pub kept: Option<Vec<bool>>,
    /// The allocator's moving averages for this layer (empty before the first update).
    #[module(skip)]
    pub(crate) importance: Option<super::allocator::Importance>,
}

impl AdaLoraLinear {
    /// A new adapter from factors in the Python library's orientation.
    ///
    /// # Shapes
    /// - `a`: `[r, d_input]`, `e`: `[r, 1]`, `b`: `[d_output, r]`
    pub fn new(a: Tensor<2>, e: Tensor<2>, b: Tensor<2>, scaling: f64, ranknum: f64, dropout: f64) -> Self {
        AdaLoraLinear {
            lora_a: Param::from_tensor(a),
            lora_e: Param::from_tensor(e),
            lora_b: Param::from_tensor(b),
            dropout: DropoutConfig::new(dropout).init(),
            scaling,
            ranknum,
            kept: None,
            importance: None,
        }
    }

    /// A fresh adapter of rank `r`, initialised as the Python library does: with `init` true,
    /// `E = 0` and `A`, `B ~ N(0, 0.02²)` (so the output starts as the base output); with `init`
    /// false, all three standard normal.
    pub fn init(d_input: usize, d_output: usize, r: usize, scaling: f64, dropout: f64, init: bool, device: &Device) -> Self {
        let std = if init { 0.02 } else { 1.0 };
        let a = Tensor::random([r, d_input], Distribution::Normal(0.0, std), device);
        let b = Tensor::random([d_output, r], Distribution::Normal(0.0, std), device);
        let e = if init { Tensor::zeros([r, 1], device) } else { Tensor::random([r, 1], Distribution::Normal(0.0, 1.0), device) };
        Self::new(a, e, b, scaling, r as f64, dropout)
    }

    /// An adapter from the Python library's tensors `lora_A`, `lora_E`, `lora_B`.
    pub fn from_torch(a: TensorData, e: TensorData, b: TensorData, scaling: f64, ranknum: f64, dropout: f64, device: &Device) -> Self {
        Self::new(Tensor::from_data(a, device), Tensor::from_data(e, device), Tensor::from_data(b, device), scaling, ranknum, dropout)
    }

    /// The number of ranks the layer holds (rows of `A`).
    pub fn rank(&self) -> usize {
        self.lora_a.shape().dims::<2>()[0]
    }

    /// `scaling / (ranknum + 1e-5)`, the factor on `B E A x`.
    pub fn scale(&self) -> f64 {
        self.scaling / (self.ranknum + RANKNUM_EPS)
    }

    /// `(A ⊙ E)ᵀ`, shape `[d_input, r]`: the first factor in Burn's orientation.
    fn scaled_a(&self) -> Tensor<2> {
        (self.lora_a.val() * self.lora_e.val()).transpose()
    }

    /// `(A ⊙ E)ᵀ Bᵀ * scale`, shape `[d_input, d_output]`: the change to the base weight.
    pub fn delta_weight(&self) -> Tensor<2> {
        self.scaled_a().matmul(self.lora_b.val().transpose()).mul_scalar(self.scale())
    }

    /// Zeroes the singular values whose flag in `keep` is false (the allocator's mask), keeping
    /// the parameter's identity and whether it requires gradients.
    ///
    /// # Shapes
    /// - `keep`: one flag per rank.
    pub fn mask_singular_values(&mut self, keep: &[bool]) {
        self.lora_e = super::svd::masked_singular_values(&self.lora_e, keep);
    }

    fn exported(&self, data: TensorData, rows: bool) -> TensorData {
        super::svd::cut_to_kept(data, self.kept.as_deref(), self.rank(), rows)
    }
}

impl LinearAdapter for AdaLoraLinear {
    /// `y + (dropout(x) (A ⊙ E)ᵀ) Bᵀ * scaling / (ranknum + 1e-5)`: rank-`r` intermediates only.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, d_input]`, `y` and output: `[batch, tokens, d_output]`
    fn adapt_output(&self, x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        if self.rank() == 0 {
            return y;
        }
        let hidden = linear(peft_core::dropout(&self.dropout, x.clone()), self.scaled_a(), None);
        let delta = linear(hidden, self.lora_b.val().transpose(), None);
        y + delta.mul_scalar(self.scale())
    }

    fn low_rank(&self) -> Option<LowRank> {
        (self.rank() > 0).then(|| LowRank { a: self.scaled_a(), b: self.lora_b.val().transpose(), scaling: self.scale() })
    }

    fn merge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        if self.rank() == 0 {
            return Ok((weight, bias));
        }
        Ok((weight + self.delta_weight(), bias))
    }

    fn unmerge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
        if self.rank() == 0 {
            return Ok((weight, bias));
        }
        Ok((weight - self.delta_weight(), bias))
    }

    /// `lora_A`, `lora_E`, `lora_B` (no `.weight`: the Python library keeps them in parameter
    /// dicts), cut to the kept ranks when the allocator has set them, as the Python library cuts
    /// the state dict by `rank_pattern` on save. `ranknum` is not saved (Python leaves it out too).
    fn export(&self) -> Vec<(String, TensorData)> {
        vec![
            ("lora_A".into(), self.exported(self.lora_a.val().into_data(), true)),
            ("lora_B".into(), self.exported(self.lora_b.val().into_data(), false)),
            ("lora_E".into(), self.exported(self.lora_e.val().into_data(), true)),
        ]
    }
}
