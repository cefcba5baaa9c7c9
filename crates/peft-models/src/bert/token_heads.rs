//! Token-level heads on BERT and RoBERTa: token classification (`classifier`, one class per
//! token) and extractive question answering (`qa_outputs`, start and end logits per token).
//!
//! transformers builds these four without the pooler; the base sits at `bert.*` or `roberta.*`
//! and the head is one linear layer on every token's last hidden state (after dropout for token
//! classification).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Int, Tensor};
use peft_core::{AdaptedLinear, AdapterSites, Result, SiteMut, TaskType};
use std::path::Path;

use super::config::BertConfig;
use super::model::BertModel;

/// Defines one head type: `$base` is the field (and key prefix) of the encoder, `$head` the
/// linear layer's field and path, `$outputs` its width from the config.
macro_rules! token_head {
    ($(#[$doc:meta])* $name:ident, $base:ident, $head:ident, $outputs:expr, $task:expr) => {
        $(#[$doc])*
        #[derive(Module, Debug)]
        pub struct $name {
            /// The encoder, without a pooler.
            pub $base: BertModel,
            /// Dropout on the hidden states (training only; transformers' QA heads have none, so
            /// it is built with probability 0 there).
            pub dropout: Dropout,
            /// `hidden_size -> outputs` on every token.
            pub $head: AdaptedLinear,
        }

        impl $name {
            /// A new model for `config`.
            pub fn new(config: &BertConfig, device: &Device) -> Self {
                let outputs: fn(&BertConfig) -> usize = $outputs;
                let p = if $task == TaskType::TokenCls { config.classifier_dropout_prob() } else { 0.0 };
                $name {
                    $base: BertModel::without_pooler(config, device),
                    dropout: DropoutConfig::new(p).init(),
                    $head: super::linear(config.hidden_size, outputs(config), config, device),
                }
            }

            /// Loads a transformers folder of this class (`config.json`, safetensors).
            pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
                Self::from_pretrained_with(dir, device, false)
            }

            /// Like `from_pretrained`; with `new_head`, the head is not read from the file
            /// (absent, or for another number of labels) and keeps its fresh initialisation.
            pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, new_head: bool) -> Result<Self> {
                let dir = dir.as_ref();
                Self::from_pretrained_with_config(dir, BertConfig::from_file(dir)?, device, new_head)
            }

            /// Like `from_pretrained_with` with a config given in code, e.g. the folder's
            /// `config.json` with another `num_labels` for a fresh head.
            pub fn from_pretrained_with_config(dir: impl AsRef<Path>, config: BertConfig, device: &Device, new_head: bool) -> Result<Self> {
                config.validate()?;
                super::load::load_head(Self::new(&config, device), dir.as_ref(), &config, new_head)
            }

            /// The head's output on every token.
            ///
            /// # Shapes
            /// - `input_ids`, `attention_mask`, `token_type_ids`: `[batch, seq]`
            /// - output: `[batch, seq, outputs]` (`num_labels`, or 2: start and end logits)
            pub fn forward(&self, input_ids: Tensor<2, Int>, attention_mask: Option<Tensor<2, Int>>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<3> {
                let hidden = self.$base.forward(input_ids, attention_mask, token_type_ids);
                self.$head.forward(peft_core::dropout(&self.dropout, hidden))
            }

            /// Like `forward` from word embeddings (prompt tuning's virtual tokens in front of
            /// [`BertModel::embed_tokens`]' output); every position's output, virtual ones included.
            ///
            /// # Shapes
            /// - `inputs_embeds`: `[batch, seq, hidden_size]`
            /// - `attention_mask`, `token_type_ids`: `[batch, seq]`
            /// - output: `[batch, seq, outputs]`
            pub fn forward_embeds(&self, inputs_embeds: Tensor<3>, attention_mask: Option<Tensor<2, Int>>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<3> {
                let hidden = self.$base.forward_embeds(inputs_embeds, attention_mask, token_type_ids);
                self.$head.forward(peft_core::dropout(&self.dropout, hidden))
            }
        }

        impl AdapterSites for $name {
            fn model_dims(&self) -> Option<peft_core::ModelDims> {
                self.$base.prompt_dims()
            }

            fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
                self.$base.visit_sites_prefixed(concat!(stringify!($base), "."), f);
                f(stringify!($head), SiteMut::Linear(&mut self.$head));
            }

            fn default_target_modules(&self) -> Vec<String> {
                vec!["query".into(), "value".into()]
            }

            fn model_type(&self) -> Option<String> {
                Some("bert".into())
            }

            fn output_head_paths(&self) -> Vec<String> {
                vec![stringify!($head).into()]
            }
        }
    };
}

token_head!(
    /// BERT with a linear classifier on every token (transformers' `BertForTokenClassification`).
    BertForTokenClassification, bert, classifier, |c| c.num_labels, TaskType::TokenCls
);
token_head!(
    /// RoBERTa with a linear classifier on every token (`RobertaForTokenClassification`).
    RobertaForTokenClassification, roberta, classifier, |c| c.num_labels, TaskType::TokenCls
);
token_head!(
    /// BERT with start/end logits per token (transformers' `BertForQuestionAnswering`).
    BertForQuestionAnswering, bert, qa_outputs, |_| 2, TaskType::QuestionAns
);
token_head!(
    /// RoBERTa with start/end logits per token (`RobertaForQuestionAnswering`).
    RobertaForQuestionAnswering, roberta, qa_outputs, |_| 2, TaskType::QuestionAns
);
