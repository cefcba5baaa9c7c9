//! Merging adapters into an `AdaptedLinear`'s base weight and taking them out again.

use burn::module::Param;
use burn::tensor::Tensor;

use super::linear::AdaptedLinear;
use super::precision::{restored, to_adapter_dtype};
use crate::{Error, Result};

impl AdaptedLinear {
    /// Folds adapter `name` into the base weight, so the forward no longer computes it.
    ///
    /// The update is added in f32 and rounded once to the base weight's type; a half-precision
    /// base keeps its values from before the first merge (see [`super::precision`]). Merging an
    /// already merged adapter does nothing.
    pub fn merge_adapter(&mut self, name: &str) -> Result<()> {
        self.adapters.check_no_rows(name)?;
        if self.adapters.merged().iter().any(|n| n == name) {
            return Ok(());
        }
        let adapter = self.adapters.get(name).ok_or_else(|| unknown(name, self.adapters.names()))?;
        let (weight, bias) = self.base_values();
        let (merged, merged_bias) =
            adapter.merge(to_adapter_dtype(weight.clone()), bias.clone().map(to_adapter_dtype))?;
        self.set_base(merged.cast(weight.dtype()), merged_bias.zip(bias.as_ref()).map(|(m, b)| m.cast(b.dtype())));
        self.adapters.keep_base(&weight, bias.into_iter().collect());
        self.adapters.mark_merged(name);
        Ok(())
    }

    /// Takes merged adapter `name` back out of the base weight: the kept original values when it
    /// is the last merged adapter of a half-precision base, else the weight minus its update.
    pub fn unmerge_adapter(&mut self, name: &str) -> Result<()> {
        if !self.adapters.merged().iter().any(|n| n == name) {
            return Err(Error::InvalidState(format!("adapter `{name}` is not merged, so it cannot be unmerged")));
        }
        let (weight, bias) = self.base_values();
        if let Some(kept) = self.adapters.kept_base_if_last(name) {
            let (kept_weight, kept_bias) = restored(kept, &weight, bias.as_ref());
            self.set_base(kept_weight, kept_bias);
            self.adapters.mark_unmerged(name);
            return Ok(());
        }
        let adapter = self.adapters.get(name).ok_or_else(|| unknown(name, self.adapters.names()))?;
        let (unmerged, unmerged_bias) =
            adapter.unmerge(to_adapter_dtype(weight.clone()), bias.clone().map(to_adapter_dtype))?;
        self.set_base(unmerged.cast(weight.dtype()), unmerged_bias.zip(bias.as_ref()).map(|(u, b)| u.cast(b.dtype())));
        self.adapters.mark_unmerged(name);
        Ok(())
    }

    /// The base weight and bias as they are now.
    fn base_values(&self) -> (Tensor<2>, Option<Tensor<1>>) {
        (self.base_weight(), self.base_layer.bias.as_ref().map(|b| b.val()))
    }

    /// Replaces the base weight (`[d_input, d_output]`) by `weight`, keeping its parameter id and
    /// whether it trains: for initialisations that move part of the base weight into an adapter
    /// (PiSSA, OLoRA). Merged adapters stay merged into the new value.
    pub fn replace_base_weight(&mut self, weight: Tensor<2>) {
        let weight = weight.cast(self.base_layer.weight.val().dtype());
        self.base_layer.weight = replace(&self.base_layer.weight, weight);
        self.leave_packed_form("its new base weight (PiSSA/OLoRA's residual) is stored in f32");
        self.adapters.forget_kept_base();
    }

    /// Forgets the packed blocks once the weight parameter holds a float value they no longer
    /// describe, warning with `what_now`; a float layer is left as it is.
    fn leave_packed_form(&mut self, what_now: &str) {
        if let Some(packed) = self.packed.take() {
            let [d_input, d_output] = packed.dims();
            log::warn!("a {} layer ({d_input} -> {d_output}) was kept packed; {what_now}", packed.0.format());
        }
    }

    /// Replaces the base values, keeping parameter ids and whether they train.
    fn set_base(&mut self, weight: Tensor<2>, bias: Option<Tensor<1>>) {
        self.base_layer.weight = replace(&self.base_layer.weight, weight);
        // Merging into 4-bit blocks would round the update away; the layer becomes f32.
        self.leave_packed_form("merging stores it dequantized (f32), so a saved merged model is not quantized");
        if let (Some(old), Some(new)) = (self.base_layer.bias.as_ref(), bias) {
            self.base_layer.bias = Some(replace(old, new));
        }
    }
}

/// A parameter with a new value, same id and same `require_grad` (exported as
/// [`crate::adapted::replace_param`], for methods that set an adapter's or a base layer's values).
pub fn replace<const D: usize>(param: &Param<Tensor<D>>, value: Tensor<D>) -> Param<Tensor<D>> {
    let require_grad = param.val().is_require_grad();
    let value = value.detach().set_require_grad(require_grad);
    param.clone().map(|_| value)
}

pub(crate) fn unknown(name: &str, available: Vec<String>) -> Error {
    Error::UnknownAdapter { name: name.into(), available }
}
