//! Base layers in half precision (f16, bf16) with adapters in f32.
//!
//! A model loaded or cast to f16/bf16 keeps its frozen weights in that type, which halves their
//! memory; adapters and their optimizer state stay in f32 ([`ADAPTER_DTYPE`]), since their
//! updates are small next to the weights and would round away. So an adapted layer:
//! - runs its base layer in the base weight's type (the input is cast to it), and every adapter in
//!   f32 on an f32 copy of the input and of the base output, then returns the input's type;
//! - merges by adding the adapter's update to an f32 copy of the base weight and rounding the sum
//!   once to the base type.
//!
//! Unmerging by subtracting the update would round a second time, and the two roundings do not
//! cancel: where the update is large next to a weight, the merged value's rounding step is larger
//! than the weight's own, so `round(round(w + d) - d)` can be several of `w`'s steps away from `w`,
//! and a thousand merge/unmerge cycles walk away from the original (the Python library, on a tiny
//! bf16 Llama: 0.028 off on weights whose largest magnitude is 0.06). So a half-precision layer
//! keeps its base values from before its first merge ([`KeptBase`]) and puts them back when its
//! last merged adapter comes out: after any number of cycles the weights are bit-identical to the
//! original. **The cost**: one copy of each merged layer's base weight (and bias) in its own type,
//! held only while something is merged (`merge_and_unload` drops it with the adapters). f32 layers
//! keep nothing and subtract, as the Python library does (their rounding, 2^-24 relative per cycle,
//! does not matter at any realistic count).

use burn::module::{Module, ModuleMapper, Param, ParamId};
use std::collections::HashSet;
use burn::tensor::{DType, FloatDType, Tensor};

/// The float type adapters hold their parameters and compute in, whatever the base's type.
pub const ADAPTER_DTYPE: FloatDType = FloatDType::F32;

/// Whether `dtype` is a half-precision float type (f16, bf16), whose merges keep the base values.
pub fn is_half(dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::BF16)
}

/// `tensor` in [`ADAPTER_DTYPE`] (the same tensor when it already is).
pub fn to_adapter_dtype<const D: usize>(tensor: Tensor<D>) -> Tensor<D> {
    tensor.cast(ADAPTER_DTYPE)
}

/// The base values of a half-precision layer from before its first merge, flattened, in the
/// order the layer lists them (weight, then bias when there is one).
#[derive(Clone, Debug, Default)]
pub struct KeptBase {
    values: Option<Vec<Tensor<1>>>,
}

impl KeptBase {
    /// Keeps `values` when nothing is merged yet (`merged_before` is empty) and the base is half
    /// precision; otherwise keeps what it had (the values before the first merge stay the ones
    /// to restore).
    pub fn keep<const D: usize>(&mut self, merged_before: &[String], weight: &Tensor<D>, rest: Vec<Tensor<1>>) {
        if !merged_before.is_empty() {
            return;
        }
        self.values = is_half(weight.dtype()).then(|| {
            let mut values = vec![weight.clone().flatten::<1>(0, D - 1)];
            values.extend(rest);
            values
        });
    }

    /// The kept values when `name` is the only merged adapter (so unmerging it gives back the
    /// original base), emptying the store; `None` otherwise.
    pub fn take_if_last(&mut self, merged: &[String], name: &str) -> Option<Vec<Tensor<1>>> {
        match merged {
            [only] if only == name => self.values.take(),
            _ => None,
        }
    }

    /// Forgets the kept values (the base weight was replaced, so they no longer describe it).
    pub fn clear(&mut self) {
        self.values = None;
    }

    /// The kept values moved to `device`.
    pub fn to_device(self, device: &burn::tensor::Device) -> Self {
        KeptBase { values: self.values.map(|v| v.into_iter().map(|t| t.to_device(device)).collect()) }
    }
}

/// `module` with every float parameter outside its adapters cast to `dtype` (the base weights,
/// norms and embeddings; adapters and their `modules_to_save` copies stay in f32), keeping each
/// parameter's id and whether it trains.
///
/// For serving or training a model in f16/bf16 on a backend that computes in them: the frozen
/// weights take half the memory, the adapters keep full precision.
pub fn cast_base_weights<M: Module>(module: M, dtype: FloatDType) -> M {
    module.map(&mut CastOutsideAdapters { dtype, adapter_depth: 0, skip: HashSet::new() })
}

/// [`cast_base_weights`] for a model with adapter sites: the placeholder weights of packed
/// layers (see [`super::packed`]) are left alone, since casting a broadcast placeholder would
/// allocate the whole weight in `dtype` for nothing.
pub fn cast_site_base_weights<M: crate::AdapterSites>(module: M, dtype: FloatDType) -> M {
    let mut skip = HashSet::new();
    module.visit_sites(&mut |_, site| {
        if let crate::SiteMut::Linear(layer) = site
            && layer.packed.is_some()
        {
            skip.insert(layer.base_layer.weight.id);
        }
    });
    module.map(&mut CastOutsideAdapters { dtype, adapter_depth: 0, skip })
}

/// The mapper behind [`cast_base_weights`]: [`super::AdapterSet`] enters its entries as
/// `"AdapterSet"` containers, which it leaves alone.
struct CastOutsideAdapters {
    dtype: FloatDType,
    adapter_depth: usize,
    /// Parameters left as they are.
    skip: HashSet<ParamId>,
}

impl ModuleMapper for CastOutsideAdapters {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        if container_type == "AdapterSet" {
            self.adapter_depth += 1;
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if container_type == "AdapterSet" {
            self.adapter_depth -= 1;
        }
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.adapter_depth > 0 || self.skip.contains(&param.id) {
            return param;
        }
        let dtype = self.dtype;
        param.map(move |t| {
            let require_grad = t.is_require_grad();
            t.cast(dtype).set_require_grad(require_grad)
        })
    }
}

/// `flat` reshaped to `like`'s shape and cast to its type (a value [`KeptBase`] kept, put back in
/// place; the model may have been cast since).
pub fn unflatten<const D: usize>(flat: Tensor<1>, like: &Tensor<D>) -> Tensor<D> {
    flat.reshape(like.shape()).cast(like.dtype())
}

/// The weight and bias [`KeptBase`] kept (`[weight, bias]` or `[weight]`), in the shapes of the
/// current `weight` and `bias`.
pub(crate) fn restored<const D: usize>(mut kept: Vec<Tensor<1>>, weight: &Tensor<D>, bias: Option<&Tensor<1>>) -> (Tensor<D>, Option<Tensor<1>>) {
    let kept_bias = bias.and_then(|b| (kept.len() > 1).then(|| unflatten(kept.remove(1), b)));
    (unflatten(kept.remove(0), weight), kept_bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn only_half_precision_bases_are_kept_and_only_before_the_first_merge() {
        let device = crate::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
        let w = Tensor::<2>::random([3, 4], Distribution::Default, &device);
        let mut kept = KeptBase::default();
        kept.keep(&[], &w, vec![]);
        assert!(kept.take_if_last(&["a".into()], "a").is_none(), "f32 keeps nothing");

        let half = w.clone().cast(FloatDType::BF16);
        kept.keep(&[], &half, vec![]);
        kept.keep(&["a".into()], &half.clone().add_scalar(1.0), vec![]);
        assert!(kept.take_if_last(&["a".into(), "b".into()], "b").is_none(), "b is not the last one merged");
        let values = kept.take_if_last(&["a".into()], "a").expect("kept before the first merge");
        assert_eq!(unflatten(values[0].clone(), &half).into_data(), half.into_data());
        assert!(kept.take_if_last(&["a".into()], "a").is_none(), "taken once");
    }
}
