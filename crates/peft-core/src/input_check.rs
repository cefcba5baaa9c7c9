//! What inputs a model can take, checked before a forward so that a bad input is a typed error
//! naming it instead of a panic deep inside a gather (an id past the vocabulary, a sequence past
//! the position table, an image of another size).

use burn::tensor::{Int, Tensor};

use crate::generation::GenerationConfig;
use crate::{Error, ModelInputs, Result};

/// The limits of a model's inputs; `None` where the model has no such limit (rotary or relative
/// positions have no table; a convolutional image model takes any size).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputLimits {
    /// Token ids must lie in `0..vocab_size`.
    pub vocab_size: Option<usize>,
    /// Token types must lie in `0..type_vocab_size`; `Some(0)` for models without token types
    /// (which then refuse them).
    pub type_vocab_size: Option<usize>,
    /// Positions a sequence may occupy (virtual tokens, a prefix and generated tokens included).
    pub max_positions: Option<usize>,
    /// Decoder token ids must lie in `0..decoder_vocab_size` (encoder-decoders).
    pub decoder_vocab_size: Option<usize>,
    /// Positions the decoder may occupy (encoder-decoders with a decoder position table).
    pub decoder_max_positions: Option<usize>,
    /// Width of `inputs_embeds`.
    pub hidden_size: Option<usize>,
    /// Channels of `pixel_values`.
    pub image_channels: Option<usize>,
    /// Height and width `pixel_values` must have exactly (a position table per patch).
    pub image_size: Option<[usize; 2]>,
    /// Mel bins of `input_features`.
    pub mel_bins: Option<usize>,
    /// Most frames `input_features` may have.
    pub max_frames: Option<usize>,
}

impl InputLimits {
    /// Checks what can be checked before a prompt method rewrites the inputs: token ids within
    /// the vocabulary, mask shapes, image and audio sizes.
    ///
    /// # Errors
    /// [`Error::TokenIdOutOfRange`], [`Error::InputShape`].
    pub fn check_ids_and_shapes(&self, inputs: &ModelInputs) -> Result<()> {
        if let Some(ids) = &inputs.input_ids {
            check_ids("input_ids", ids, self.vocab_size)?;
            if let Some(mask) = &inputs.attention_mask
                && mask.dims() != ids.dims()
            {
                return Err(shape("attention_mask", format!("{:?} (the shape of `input_ids`)", ids.dims()), mask.dims().to_vec(), "give one mask value per token"));
            }
            if let Some(types) = &inputs.token_type_ids
                && types.dims() != ids.dims()
            {
                return Err(shape("token_type_ids", format!("{:?} (the shape of `input_ids`)", ids.dims()), types.dims().to_vec(), "give one token type per token"));
            }
        }
        if let (Some(types), Some(embeds)) = (&inputs.token_type_ids, &inputs.inputs_embeds)
            && types.dims()[..] != embeds.dims()[..2]
        {
            let expected = format!("{:?} (the batch and length of `inputs_embeds`)", &embeds.dims()[..2]);
            return Err(shape("token_type_ids", expected, types.dims().to_vec(), "give one token type per input vector"));
        }
        if let Some(types) = &inputs.token_type_ids {
            match self.type_vocab_size {
                Some(0) => {
                    return Err(Error::Unsupported {
                        what: "`token_type_ids` on a model without token types".into(),
                        supported: "token types on BERT-family encoders; leave them out for this model".into(),
                    });
                }
                limit => check_ids("token_type_ids", types, limit)?,
            }
        }
        if let Some(ids) = &inputs.decoder_input_ids {
            check_ids("decoder_input_ids", ids, self.decoder_vocab_size.or(self.vocab_size))?;
        }
        if let (Some(embeds), Some(hidden)) = (&inputs.inputs_embeds, self.hidden_size)
            && embeds.dims()[2] != hidden
        {
            return Err(shape("inputs_embeds", format!("[batch, len, {hidden}]"), embeds.dims().to_vec(), "give vectors of the model's hidden size"));
        }
        if let Some(pixels) = &inputs.pixel_values {
            self.check_pixels(&pixels.dims())?;
        }
        if let Some(features) = &inputs.input_features {
            self.check_features(&features.dims())?;
        }
        Ok(())
    }

    /// Every check for a forward on `inputs` as the model will see them.
    ///
    /// # Errors
    /// As [`InputLimits::check_ids_and_shapes`] and [`InputLimits::check_forward_positions`].
    pub fn check_forward(&self, inputs: &ModelInputs) -> Result<()> {
        self.check_ids_and_shapes(inputs)?;
        self.check_forward_positions(inputs)
    }

    /// Every check for generating after `inputs` as the model will see them.
    ///
    /// # Errors
    /// As [`InputLimits::check_ids_and_shapes`] and [`InputLimits::check_generation_positions`].
    pub fn check_generation(&self, inputs: &ModelInputs, config: &GenerationConfig, encoder_decoder: bool) -> Result<()> {
        self.check_ids_and_shapes(inputs)?;
        self.check_generation_positions(inputs, config, encoder_decoder)
    }

    /// Checks that the positions a forward's inputs occupy (an already-seen prefix, then the
    /// tokens or vectors; the decoder's tokens) fit the position tables.
    ///
    /// # Errors
    /// [`Error::SequenceTooLong`].
    pub fn check_forward_positions(&self, inputs: &ModelInputs) -> Result<()> {
        self.check_positions("input_ids", positions(inputs), "shorten the input (or use fewer virtual tokens)")?;
        if let Some(ids) = &inputs.decoder_input_ids {
            self.check_decoder_positions(ids.dims()[1], "shorten the decoder input")?;
        }
        Ok(())
    }

    /// Checks that generating after `inputs` stays within the position tables: every generated
    /// token but the last is fed back and takes a position (of the decoder, for an
    /// encoder-decoder, after its start token).
    ///
    /// # Errors
    /// [`Error::SequenceTooLong`] saying how many new tokens fit.
    pub fn check_generation_positions(&self, inputs: &ModelInputs, config: &GenerationConfig, encoder_decoder: bool) -> Result<()> {
        let new_tokens = |prompt_len: usize| config.max_new_tokens.unwrap_or_else(|| config.max_length.saturating_sub(prompt_len));
        let before = positions(inputs);
        if encoder_decoder {
            self.check_positions("input_ids", before, "shorten the input")?;
            return self.check_decoder_positions(new_tokens(1).max(1), "lower max_new_tokens");
        }
        let fix = match self.max_positions {
            Some(max) if before < max => format!("lower max_new_tokens to {} or shorten the prompt", max - before + 1),
            _ => "shorten the prompt".to_string(),
        };
        self.check_positions("input_ids", before + new_tokens(before).saturating_sub(1), &fix)
    }

    /// Checks that `positions` (the tokens of a forward, or a prompt plus what generation adds)
    /// fit the position table.
    ///
    /// # Errors
    /// [`Error::SequenceTooLong`].
    pub fn check_positions(&self, input: &'static str, positions: usize, fix: &str) -> Result<()> {
        check_len(input, positions, self.max_positions, fix)
    }

    /// Checks that `positions` decoder tokens fit the decoder's position table.
    ///
    /// # Errors
    /// [`Error::SequenceTooLong`].
    pub fn check_decoder_positions(&self, positions: usize, fix: &str) -> Result<()> {
        check_len("decoder_input_ids", positions, self.decoder_max_positions, fix)
    }

    fn check_pixels(&self, dims: &[usize; 4]) -> Result<()> {
        let [_, channels, height, width] = *dims;
        if let Some(want) = self.image_channels
            && channels != want
        {
            return Err(shape("pixel_values", format!("[batch, {want}, height, width]"), dims.to_vec(), "give images with the model's channels (RGB: 3)"));
        }
        if let Some([h, w]) = self.image_size
            && [height, width] != [h, w]
        {
            let fix = format!("resize the images to {h}x{w}, the model's `image_size`");
            return Err(shape("pixel_values", format!("[batch, {channels}, {h}, {w}]"), dims.to_vec(), &fix));
        }
        Ok(())
    }

    fn check_features(&self, dims: &[usize; 3]) -> Result<()> {
        let [_, bins, frames] = *dims;
        if let Some(want) = self.mel_bins
            && bins != want
        {
            return Err(shape("input_features", format!("[batch, {want}, frames]"), dims.to_vec(), "compute the log-mel features with the model's `num_mel_bins`"));
        }
        check_len("input_features", frames, self.max_frames, "cut the audio into shorter pieces")
    }
}

/// Positions inputs occupy: an already-seen prefix plus the tokens or vectors.
fn positions(inputs: &ModelInputs) -> usize {
    let seen = inputs.past_key_values.as_ref().map(|c| c.seen()).unwrap_or(0);
    let len = match (&inputs.inputs_embeds, &inputs.input_ids) {
        (Some(embeds), _) => embeds.dims()[1],
        (None, Some(ids)) => ids.dims()[1],
        (None, None) => 0,
    };
    seen + len
}

/// Refuses ids outside `0..vocab_size` (negative ones included), naming the first offender.
fn check_ids(input: &'static str, ids: &Tensor<2, Int>, vocab_size: Option<usize>) -> Result<()> {
    let Some(vocab_size) = vocab_size else { return Ok(()) };
    if ids.dims()[1] == 0 || ids.dims()[0] == 0 {
        return Ok(());
    }
    // Two reductions read back instead of the whole tensor: one device sync per forward.
    let max = ids.clone().max().into_scalar::<i64>();
    let min = ids.clone().min().into_scalar::<i64>();
    let bad = if min < 0 { min } else { max };
    if bad < 0 || bad as u64 >= vocab_size as u64 {
        return Err(Error::TokenIdOutOfRange { input, id: bad, vocab_size });
    }
    Ok(())
}

fn check_len(input: &'static str, len: usize, max: Option<usize>, fix: &str) -> Result<()> {
    match max {
        Some(max) if len > max => Err(Error::SequenceTooLong { input, len, max_positions: max, fix: fix.to_string() }),
        _ => Ok(()),
    }
}

fn shape(input: &'static str, expected: String, actual: Vec<usize>, fix: &str) -> Error {
    Error::InputShape { input, expected, actual, fix: fix.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Tensor, TensorData};

    fn ids(values: Vec<i64>, shape: [usize; 2]) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(values, shape), &Device::default())
    }

    #[test]
    fn ids_past_the_vocabulary_name_the_id() {
        let limits = InputLimits { vocab_size: Some(10), ..Default::default() };
        assert!(limits.check_ids_and_shapes(&ModelInputs::ids(ids(vec![0, 9, 3], [1, 3]))).is_ok());
        let err = limits.check_ids_and_shapes(&ModelInputs::ids(ids(vec![1, 2, 99999], [1, 3]))).expect_err("past the vocabulary");
        assert!(matches!(err, Error::TokenIdOutOfRange { id: 99999, vocab_size: 10, .. }), "{err}");
        let err = limits.check_ids_and_shapes(&ModelInputs::ids(ids(vec![1, -4], [1, 2]))).expect_err("negative");
        assert!(matches!(err, Error::TokenIdOutOfRange { id: -4, .. }), "{err}");
    }

    #[test]
    fn a_mask_of_another_shape_is_refused() {
        let limits = InputLimits::default();
        let inputs = ModelInputs::ids_with_mask(ids(vec![1, 2, 3], [1, 3]), ids(vec![1, 1], [1, 2]));
        let err = limits.check_ids_and_shapes(&inputs).expect_err("mask shape");
        assert!(matches!(err, Error::InputShape { input: "attention_mask", .. }), "{err}");
    }

    #[test]
    fn positions_past_the_table_are_refused_with_the_fix() {
        let limits = InputLimits { max_positions: Some(64), ..Default::default() };
        assert!(limits.check_positions("input_ids", 64, "shorten").is_ok());
        let err = limits.check_positions("input_ids", 500, "shorten it").expect_err("too long");
        assert!(matches!(err, Error::SequenceTooLong { len: 500, max_positions: 64, .. }), "{err}");
        assert!(err.to_string().contains("shorten it"), "{err}");
        // No table, no limit.
        assert!(InputLimits::default().check_positions("input_ids", 1 << 20, "").is_ok());
    }

    #[test]
    fn images_of_another_size_or_channels_are_refused() {
        let limits = InputLimits { image_channels: Some(3), image_size: Some([32, 32]), ..Default::default() };
        assert!(limits.check_pixels(&[2, 3, 32, 32]).is_ok());
        assert!(matches!(limits.check_pixels(&[2, 1, 32, 32]), Err(Error::InputShape { input: "pixel_values", .. })));
        let err = limits.check_pixels(&[2, 3, 64, 32]).expect_err("size");
        assert!(err.to_string().contains("32x32"), "{err}");
    }
}
