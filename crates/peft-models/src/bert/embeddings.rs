//! `BertEmbeddings`: word, position and token type embeddings, summed and normalised.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Int, Tensor};
use peft_core::AdaptedEmbedding;

use super::config::{BertConfig, ModelType};
use crate::layers::LayerNorm;

/// The embedding block (`embeddings` in transformers).
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// Token embeddings, `[vocab_size, hidden_size]`.
    pub word_embeddings: AdaptedEmbedding,
    /// Absolute position embeddings, `[max_position_embeddings, hidden_size]`.
    pub position_embeddings: AdaptedEmbedding,
    /// Segment embeddings, `[type_vocab_size, hidden_size]`.
    pub token_type_embeddings: AdaptedEmbedding,
    /// Normalises the sum (named as in transformers, so keys match).
    pub LayerNorm: LayerNorm,
    /// Dropout after the normalisation (training only).
    pub dropout: Dropout,
    /// BERT or RoBERTa position ids.
    #[module(skip)]
    pub model_type: ModelType,
    /// The padding id, around which RoBERTa builds position ids.
    pub pad_token_id: usize,
}

impl BertEmbeddings {
    /// New tables drawn from `N(0, initializer_range)`.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let table = |rows| super::embedding(rows, config.hidden_size, config, device);
        BertEmbeddings {
            word_embeddings: table(config.vocab_size),
            position_embeddings: table(config.max_position_embeddings),
            token_type_embeddings: table(config.type_vocab_size),
            LayerNorm: LayerNorm::new(config.hidden_size, config.layer_norm_eps, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            model_type: config.model_type,
            pad_token_id: config.pad_token_id,
        }
    }

    /// Embeds token ids: word + position + token type, then LayerNorm.
    ///
    /// Position ids are `0..seq` for BERT; for RoBERTa, `pad_token_id + 1 + i` for the `i`-th
    /// non-padding token and `pad_token_id` on padding (transformers'
    /// `create_position_ids_from_input_ids`). Token type ids default to zeros.
    ///
    /// # Shapes
    /// - `input_ids`, `token_type_ids`: `[batch, seq]`
    /// - output: `[batch, seq, hidden_size]`
    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<3> {
        self.forward_after(input_ids, token_type_ids, 0)
    }

    /// [`BertEmbeddings::forward`] for tokens that follow `past` already-seen positions (prefix
    /// tuning's virtual tokens): positions start `past` later, as transformers offsets them by the
    /// cache's length.
    ///
    /// # Shapes
    /// - `input_ids`, `token_type_ids`: `[batch, seq]`
    /// - output: `[batch, seq, hidden_size]`
    pub fn forward_after(&self, input_ids: Tensor<2, Int>, token_type_ids: Option<Tensor<2, Int>>, past: usize) -> Tensor<3> {
        let positions = match self.model_type {
            ModelType::Bert => self.sequential_positions(input_ids.dims(), &input_ids.device()).add_scalar(past as i64),
            ModelType::Roberta => {
                let pad = self.pad_token_id as i64;
                let real = input_ids.clone().not_equal_elem(pad).int();
                (real.clone().cumsum(1) + past as i64) * real + pad
            }
        };
        let words = self.word_embeddings.forward(input_ids);
        self.finish(words, positions, token_type_ids)
    }

    /// Embeds already looked-up word embeddings (prompt tuning prepends learned rows to them).
    ///
    /// Positions are sequential for both families: RoBERTa cannot see padding in embeddings, so
    /// it counts from `pad_token_id + 1` as transformers' `create_position_ids_from_inputs_embeds`.
    ///
    /// # Shapes
    /// - `inputs_embeds`: `[batch, seq, hidden_size]`
    /// - `token_type_ids`: `[batch, seq]`
    /// - output: `[batch, seq, hidden_size]`
    pub fn forward_embeds(&self, inputs_embeds: Tensor<3>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<3> {
        let [batch, seq, _] = inputs_embeds.dims();
        let positions = self.sequential_positions([batch, seq], &inputs_embeds.device());
        self.finish(inputs_embeds, positions, token_type_ids)
    }

    fn sequential_positions(&self, [batch, seq]: [usize; 2], device: &Device) -> Tensor<2, Int> {
        let start = match self.model_type {
            ModelType::Bert => 0,
            ModelType::Roberta => self.pad_token_id as i64 + 1,
        };
        Tensor::<1, Int>::arange(start..start + seq as i64, device).unsqueeze::<2>().repeat_dim(0, batch)
    }

    fn finish(&self, words: Tensor<3>, positions: Tensor<2, Int>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<3> {
        let [batch, seq, _] = words.dims();
        let token_type_ids = token_type_ids.unwrap_or_else(|| Tensor::zeros([batch, seq], &words.device()));
        let sum = words + self.token_type_embeddings.forward(token_type_ids) + self.position_embeddings.forward(positions);
        peft_core::dropout(&self.dropout, self.LayerNorm.forward(sum))
    }
}
