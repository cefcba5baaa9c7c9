//! Patch, CLS and position embeddings (`vit.embeddings`).

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Distribution, Tensor};
use peft_core::{AdaptedConv2d, Error, Result};

use super::config::ViTConfig;

/// The patch embedding (`patch_embeddings`): a convolution with stride = kernel = patch size.
#[derive(Module, Debug)]
pub struct ViTPatchEmbeddings {
    /// `num_channels -> hidden_size`, kernel and stride `patch_size`.
    pub projection: AdaptedConv2d,
}

impl ViTPatchEmbeddings {
    /// A new projection for `config`.
    pub fn new(config: &ViTConfig, device: &Device) -> Self {
        let patch = config.patch_size.dims();
        let conv = super::conv2d(config.num_channels, config.hidden_size, patch, patch, config, device);
        ViTPatchEmbeddings { projection: conv }
    }

    /// One vector per patch, in row-major patch order.
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, channels, height, width]`
    /// - output: `[batch, num_patches, hidden_size]`
    pub fn forward(&self, pixel_values: Tensor<4>) -> Tensor<3> {
        // The pixels in the model's float type (f16/bf16 when its weights were cast).
        let pixel_values = pixel_values.cast(self.projection.weight_dtype());
        self.projection.forward(pixel_values).flatten::<3>(2, 3).swap_dims(1, 2)
    }
}

/// `[CLS; patches] + position_embeddings` (`vit.embeddings`).
#[derive(Module, Debug)]
pub struct ViTEmbeddings {
    /// The learned CLS vector, `[1, 1, hidden_size]`.
    pub cls_token: Param<Tensor<3>>,
    /// One learned vector per position (CLS first), `[1, num_patches + 1, hidden_size]`.
    pub position_embeddings: Param<Tensor<3>>,
    /// The patch projection.
    pub patch_embeddings: ViTPatchEmbeddings,
    /// Dropout on the sum (training only).
    pub dropout: Dropout,
    /// `[channels, height, width]` the position embeddings were made for.
    pub input_shape: [usize; 3],
}

impl ViTEmbeddings {
    /// New embeddings drawn from `N(0, initializer_range)`.
    pub fn new(config: &ViTConfig, device: &Device) -> Self {
        let normal = Distribution::Normal(0.0, config.initializer_range);
        let [h, w] = config.image_size.dims();
        ViTEmbeddings {
            cls_token: Param::from_tensor(Tensor::random([1, 1, config.hidden_size], normal, device)),
            position_embeddings: Param::from_tensor(Tensor::random([1, config.num_patches() + 1, config.hidden_size], normal, device)),
            patch_embeddings: ViTPatchEmbeddings::new(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            input_shape: [config.num_channels, h, w],
        }
    }

    /// The patch sequence of an image with the CLS vector first, before positions are added.
    ///
    /// Fails with [`Error::ShapeMismatch`] when the image is not `[num_channels, image_size]`:
    /// the position embeddings cover exactly that grid (interpolating them is not supported).
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, channels, height, width]`
    /// - output: `[batch, num_patches + 1, hidden_size]`
    pub fn embed_patches(&self, pixel_values: Tensor<4>) -> Result<Tensor<3>> {
        let [batch, c, h, w] = pixel_values.dims();
        if [c, h, w] != self.input_shape {
            return Err(Error::ShapeMismatch {
                path: "embeddings".into(),
                tensor: "pixel_values [channels, height, width]".into(),
                expected: self.input_shape.to_vec(),
                actual: vec![c, h, w],
            });
        }
        let patches = self.patch_embeddings.forward(pixel_values);
        let hidden = patches.dims()[2];
        let cls = self.cls_token.val().expand([batch, 1, hidden]);
        Ok(Tensor::cat(vec![cls, patches], 1))
    }

    /// `dropout(x + position_embeddings)`.
    ///
    /// # Shapes
    /// - `x`: `[batch, num_patches + 1, hidden_size]`, and the same out.
    pub fn add_positions(&self, x: Tensor<3>) -> Tensor<3> {
        self.dropout.forward(x + self.position_embeddings.val())
    }

    /// [`ViTEmbeddings::embed_patches`] then [`ViTEmbeddings::add_positions`].
    ///
    /// # Shapes
    /// - `pixel_values`: `[batch, channels, height, width]`
    /// - output: `[batch, num_patches + 1, hidden_size]`
    pub fn forward(&self, pixel_values: Tensor<4>) -> Result<Tensor<3>> {
        Ok(self.add_positions(self.embed_patches(pixel_values)?))
    }
}
