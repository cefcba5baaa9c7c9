//! The backend extension behind [`super::PackedBase::matmul`]: `x Wᵀ` with `W` dequantized inside
//! the forward and again inside the backward (its state is the packed handle, never a tensor).
//!
//! Implemented for the default CPU backend (Flex) and for autodiff over it; other backends take
//! the plain fallback in `PackedBase::matmul`.

use burn::tensor::Device;

use super::PackedBase;

/// Whether `device` runs the extension (Flex, with or without autodiff).
pub(super) fn supported(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        matches!(device.as_dispatch().clone().inner(), burn::backend::DispatchDevice::Flex(_))
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// `x Wᵀ` through the extension; only called where [`supported`] said yes.
///
/// # Shapes
/// - `x`: `[rows, d_input]`, output `[rows, d_output]`
#[cfg(feature = "flex")]
pub(super) fn packed_matmul(x: burn::tensor::Tensor<2>, weight: PackedBase) -> burn::tensor::Tensor<2> {
    use burn::backend::Dispatch;
    burn::tensor::Tensor::from_dispatch(<Dispatch as flex_impl::PackedMatmulBackend>::packed_matmul(x.into_dispatch(), weight))
}

#[cfg(not(feature = "flex"))]
pub(super) fn packed_matmul(x: burn::tensor::Tensor<2>, weight: PackedBase) -> burn::tensor::Tensor<2> {
    let w = weight.dequantized(&x.device());
    x.matmul(w)
}

#[cfg(feature = "flex")]
mod flex_impl {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn::backend::autodiff::Autodiff;
    use burn::backend::TensorMetadata;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Backend, Flex, backend_extension};
    use burn::tensor::TensorData;

    use super::PackedBase;

    /// `W` as `[d_output, d_input]` on the device of `like`, in `like`'s backend.
    fn dequantize_on<B: Backend>(weight: &PackedBase, like: &FloatTensor<B>) -> FloatTensor<B> {
        let [d_input, d_output] = weight.dims();
        let device = like.device();
        B::float_from_data(TensorData::new(weight.0.dequantize(), [d_output, d_input]), &device)
    }

    /// The extension: `x Wᵀ` for `x` `[rows, d_input]` and `W` `[d_output, d_input]` packed.
    #[backend_extension(Autodiff, Flex)]
    pub trait PackedMatmulBackend: Backend {
        /// `x Wᵀ`, `W` dequantized for the call only.
        fn packed_matmul(x: FloatTensor<Self>, weight: PackedBase) -> FloatTensor<Self> {
            let w = dequantize_on::<Self>(&weight, &x);
            Self::float_matmul(x, Self::float_transpose(w))
        }
    }

    impl PackedMatmulBackend for Flex {}

    /// The backward of `y = x Wᵀ` for a frozen `W`: `∂L/∂x = ∂L/∂y W`, dequantizing `W` again.
    #[derive(Debug)]
    struct PackedMatmulBackward;

    impl<B: Backend> Backward<B, 1> for PackedMatmulBackward {
        type State = PackedBase;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            let weight = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                let w = dequantize_on::<B>(&weight, &grad);
                B::float_matmul(grad, w)
            });
        }
    }

    impl<B: PackedMatmulBackend, C: CheckpointStrategy> PackedMatmulBackend for Autodiff<B, C> {
        fn packed_matmul(x: FloatTensor<Self>, weight: PackedBase) -> FloatTensor<Self> {
            match PackedMatmulBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let y = B::packed_matmul(x.into_primitive(), weight.clone());
                    prep.finish(weight, y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::packed_matmul(x.into_primitive(), weight)),
            }
        }
    }
}
