//! One type for every architecture and head, loaded from a folder.

use burn::module::Module;
use burn::tensor::Device;
use peft_core::{AdapterSites, Error, Result, SiteMut, TaskModel, TaskType};
use std::path::Path;

use super::head::{Head, ModelInfo};
use super::inputs::{AutoInputs, AutoOutput};
use crate::bert::{
    BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification, BertModel, RobertaForQuestionAnswering,
    RobertaForSequenceClassification, RobertaForTokenClassification,
};
use crate::bloom::{BloomForCausalLM, BloomForQuestionAnswering, BloomForSequenceClassification, BloomForTokenClassification, BloomModel};
use crate::generation::{Generated, GenerationConfig};
use crate::gpt2::{Gpt2ForQuestionAnswering, Gpt2ForSequenceClassification, Gpt2ForTokenClassification, Gpt2LMHeadModel, Gpt2Model};
use crate::llama::LlamaForCausalLM;
use crate::segformer::{SegformerForImageClassification, SegformerForSemanticSegmentation, SegformerModel};
use crate::t5::{T5EncoderModel, T5ForConditionalGeneration, T5ForQuestionAnswering, T5ForSequenceClassification, T5ForTokenClassification};
use crate::vit::{ViTForImageClassification, ViTModel};
use crate::whisper::{WhisperForConditionalGeneration, WhisperModel};

/// Any supported architecture with any of its heads ([`super::SUPPORTED`]).
///
/// It is a Burn module and an [`AdapterSites`] model like each architecture, so
/// `get_peft_model`, `PeftModel::from_pretrained`, merging and saving work on it unchanged.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum AutoModel {
    /// Llama, Mistral, Qwen2.
    Llama(LlamaForCausalLM),
    /// GPT-2 features.
    Gpt2(Gpt2Model),
    /// GPT-2 causal LM.
    Gpt2Lm(Gpt2LMHeadModel),
    /// GPT-2 sequence classification.
    Gpt2SeqCls(Gpt2ForSequenceClassification),
    /// GPT-2 token classification.
    Gpt2TokenCls(Gpt2ForTokenClassification),
    /// GPT-2 question answering.
    Gpt2Qa(Gpt2ForQuestionAnswering),
    /// BLOOM features.
    Bloom(BloomModel),
    /// BLOOM causal LM.
    BloomLm(BloomForCausalLM),
    /// BLOOM sequence classification.
    BloomSeqCls(BloomForSequenceClassification),
    /// BLOOM token classification.
    BloomTokenCls(BloomForTokenClassification),
    /// BLOOM question answering.
    BloomQa(BloomForQuestionAnswering),
    /// BERT or RoBERTa features.
    Bert(BertModel),
    /// BERT sequence classification.
    BertSeqCls(BertForSequenceClassification),
    /// RoBERTa sequence classification.
    RobertaSeqCls(RobertaForSequenceClassification),
    /// BERT token classification.
    BertTokenCls(BertForTokenClassification),
    /// RoBERTa token classification.
    RobertaTokenCls(RobertaForTokenClassification),
    /// BERT question answering.
    BertQa(BertForQuestionAnswering),
    /// RoBERTa question answering.
    RobertaQa(RobertaForQuestionAnswering),
    /// Whisper encoder-decoder features.
    Whisper(WhisperModel),
    /// Whisper speech-to-text.
    WhisperGen(WhisperForConditionalGeneration),
    /// T5 / mT5 text-to-text.
    T5Gen(T5ForConditionalGeneration),
    /// T5 / mT5 encoder features.
    T5Enc(T5EncoderModel),
    /// T5 sequence classification.
    T5SeqCls(T5ForSequenceClassification),
    /// T5 token classification.
    T5TokenCls(T5ForTokenClassification),
    /// T5 question answering.
    T5Qa(T5ForQuestionAnswering),
    /// ViT features.
    Vit(ViTModel),
    /// ViT image classification.
    VitCls(ViTForImageClassification),
    /// SegFormer features (the last stage's map).
    Segformer(SegformerModel),
    /// SegFormer semantic segmentation.
    SegformerSeg(SegformerForSemanticSegmentation),
    /// SegFormer image classification.
    SegformerCls(SegformerForImageClassification),
}

/// Runs `$body` with `$m` bound to the model inside whichever variant `$self` is.
macro_rules! on_model_impl {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            AutoModel::Llama($m) => $body,
            AutoModel::Gpt2($m) => $body,
            AutoModel::Gpt2Lm($m) => $body,
            AutoModel::Gpt2SeqCls($m) => $body,
            AutoModel::Gpt2TokenCls($m) => $body,
            AutoModel::Gpt2Qa($m) => $body,
            AutoModel::Bloom($m) => $body,
            AutoModel::BloomLm($m) => $body,
            AutoModel::BloomSeqCls($m) => $body,
            AutoModel::BloomTokenCls($m) => $body,
            AutoModel::BloomQa($m) => $body,
            AutoModel::Bert($m) => $body,
            AutoModel::BertSeqCls($m) => $body,
            AutoModel::RobertaSeqCls($m) => $body,
            AutoModel::BertTokenCls($m) => $body,
            AutoModel::RobertaTokenCls($m) => $body,
            AutoModel::BertQa($m) => $body,
            AutoModel::RobertaQa($m) => $body,
            AutoModel::Whisper($m) => $body,
            AutoModel::WhisperGen($m) => $body,
            AutoModel::T5Gen($m) => $body,
            AutoModel::T5Enc($m) => $body,
            AutoModel::T5SeqCls($m) => $body,
            AutoModel::T5TokenCls($m) => $body,
            AutoModel::T5Qa($m) => $body,
            AutoModel::Vit($m) => $body,
            AutoModel::VitCls($m) => $body,
            AutoModel::Segformer($m) => $body,
            AutoModel::SegformerSeg($m) => $body,
            AutoModel::SegformerCls($m) => $body,
        }
    };
}

pub(super) use on_model_impl as on_model;

impl AutoModel {
    /// Loads `dir` with `head` (else the one `config.json`'s `architectures` names, else the
    /// family's default).
    ///
    /// # Errors
    /// [`Error::Unsupported`] naming every supported `model_type` and head; the family's own
    /// loading errors (missing files, tensors, shapes).
    pub fn from_pretrained(dir: impl AsRef<Path>, head: Option<Head>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let info = ModelInfo::from_dir(dir)?;
        let head = info.head(head)?;
        Ok(match (info.model_type.as_str(), head) {
            ("llama" | "mistral" | "qwen2", _) => AutoModel::Llama(LlamaForCausalLM::from_pretrained(dir, device)?),
            ("gpt2", Head::CausalLm) => AutoModel::Gpt2Lm(Gpt2LMHeadModel::from_pretrained(dir, device)?),
            ("gpt2", Head::SequenceClassification) => AutoModel::Gpt2SeqCls(Gpt2ForSequenceClassification::from_pretrained(dir, device)?),
            ("gpt2", Head::TokenClassification) => AutoModel::Gpt2TokenCls(Gpt2ForTokenClassification::from_pretrained(dir, device)?),
            ("gpt2", Head::QuestionAnswering) => AutoModel::Gpt2Qa(Gpt2ForQuestionAnswering::from_pretrained(dir, device)?),
            ("gpt2", _) => AutoModel::Gpt2(Gpt2Model::from_pretrained(dir, device)?),
            ("bloom", Head::CausalLm) => AutoModel::BloomLm(BloomForCausalLM::from_pretrained(dir, device)?),
            ("bloom", Head::SequenceClassification) => AutoModel::BloomSeqCls(BloomForSequenceClassification::from_pretrained(dir, device)?),
            ("bloom", Head::TokenClassification) => AutoModel::BloomTokenCls(BloomForTokenClassification::from_pretrained(dir, device)?),
            ("bloom", Head::QuestionAnswering) => AutoModel::BloomQa(BloomForQuestionAnswering::from_pretrained(dir, device)?),
            ("bloom", _) => AutoModel::Bloom(BloomModel::from_pretrained(dir, device)?),
            ("bert", Head::SequenceClassification) => AutoModel::BertSeqCls(BertForSequenceClassification::from_pretrained(dir, device)?),
            ("roberta", Head::SequenceClassification) => AutoModel::RobertaSeqCls(RobertaForSequenceClassification::from_pretrained(dir, device)?),
            ("bert", Head::TokenClassification) => AutoModel::BertTokenCls(BertForTokenClassification::from_pretrained(dir, device)?),
            ("roberta", Head::TokenClassification) => AutoModel::RobertaTokenCls(RobertaForTokenClassification::from_pretrained(dir, device)?),
            ("bert", Head::QuestionAnswering) => AutoModel::BertQa(BertForQuestionAnswering::from_pretrained(dir, device)?),
            ("roberta", Head::QuestionAnswering) => AutoModel::RobertaQa(RobertaForQuestionAnswering::from_pretrained(dir, device)?),
            ("bert" | "roberta", _) => AutoModel::Bert(BertModel::from_pretrained(dir, device)?),
            ("whisper", Head::Seq2SeqLm) => AutoModel::WhisperGen(WhisperForConditionalGeneration::from_pretrained(dir, device)?),
            ("whisper", _) => AutoModel::Whisper(WhisperModel::from_pretrained(dir, device)?),
            ("t5" | "mt5", Head::Seq2SeqLm) => AutoModel::T5Gen(T5ForConditionalGeneration::from_pretrained(dir, device)?),
            ("t5" | "mt5", Head::SequenceClassification) => AutoModel::T5SeqCls(T5ForSequenceClassification::from_pretrained(dir, device)?),
            ("t5" | "mt5", Head::TokenClassification) => AutoModel::T5TokenCls(T5ForTokenClassification::from_pretrained(dir, device)?),
            ("t5" | "mt5", Head::QuestionAnswering) => AutoModel::T5Qa(T5ForQuestionAnswering::from_pretrained(dir, device)?),
            ("t5" | "mt5", _) => AutoModel::T5Enc(T5EncoderModel::from_pretrained(dir, device)?),
            ("vit", Head::ImageClassification) => AutoModel::VitCls(ViTForImageClassification::from_pretrained(dir, device)?),
            ("vit", _) => AutoModel::Vit(ViTModel::from_pretrained(dir, device)?),
            ("segformer", Head::SemanticSegmentation) => AutoModel::SegformerSeg(SegformerForSemanticSegmentation::from_pretrained(dir, device)?),
            ("segformer", Head::ImageClassification) => AutoModel::SegformerCls(SegformerForImageClassification::from_pretrained(dir, device)?),
            ("segformer", _) => AutoModel::Segformer(SegformerModel::from_pretrained(dir, device)?),
            (other, head) => {
                return Err(Error::Unsupported { what: format!("the {} head for `{other}`", head.name()), supported: "see peft_models::auto::SUPPORTED".into() });
            }
        })
    }

    /// Loads `dir` with a classification head of `num_labels` outputs: the size of an adapter's
    /// `modules_to_save` copy of the head, for a base folder saved without that head (a bare
    /// encoder such as MiniLM) or with one of another size. The head's weights come from the
    /// folder when it has them at that size; otherwise the head keeps a fresh initialisation
    /// (the adapter's copy is what computes the output while the adapter is active).
    ///
    /// Heads other than sequence and token classification on BERT, RoBERTa, GPT-2 and BLOOM load
    /// as [`AutoModel::from_pretrained`] does.
    ///
    /// # Errors
    /// As [`AutoModel::from_pretrained`]; [`Error::InvalidConfig`] for `num_labels == 0`.
    pub fn from_pretrained_with_num_labels(dir: impl AsRef<Path>, head: Option<Head>, num_labels: usize, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let info = ModelInfo::from_dir(dir)?;
        let head = info.head(head)?;
        let sized = matches!(head, Head::SequenceClassification | Head::TokenClassification);
        if !sized || !matches!(info.model_type.as_str(), "bert" | "roberta" | "gpt2" | "bloom") {
            return Self::from_pretrained(dir, Some(head), device);
        }
        if num_labels == 0 {
            return Err(Error::config("num_labels", 0, "a classification head needs at least one label"));
        }
        let sequence = head == Head::SequenceClassification;
        match (info.model_type.as_str(), sequence) {
            ("gpt2", true) => return Ok(AutoModel::Gpt2SeqCls(Gpt2ForSequenceClassification::from_pretrained_with_num_labels(dir, device, num_labels)?)),
            ("gpt2", false) => return Ok(AutoModel::Gpt2TokenCls(Gpt2ForTokenClassification::from_pretrained_with_num_labels(dir, device, num_labels)?)),
            ("bloom", true) => return Ok(AutoModel::BloomSeqCls(BloomForSequenceClassification::from_pretrained_with_num_labels(dir, device, num_labels)?)),
            ("bloom", false) => return Ok(AutoModel::BloomTokenCls(BloomForTokenClassification::from_pretrained_with_num_labels(dir, device, num_labels)?)),
            _ => {}
        }
        let mut config = BertConfig::from_file(dir)?;
        config.num_labels = num_labels;
        let roberta = info.model_type == "roberta";
        let load = |new_head: bool| -> Result<Self> {
            let config = config.clone();
            Ok(match (head, roberta) {
                (Head::SequenceClassification, false) => AutoModel::BertSeqCls(BertForSequenceClassification::from_pretrained_with_config(dir, config, device, new_head)?),
                (Head::SequenceClassification, true) => AutoModel::RobertaSeqCls(RobertaForSequenceClassification::from_pretrained_with_config(dir, config, device, new_head)?),
                (_, false) => AutoModel::BertTokenCls(BertForTokenClassification::from_pretrained_with_config(dir, config, device, new_head)?),
                (_, true) => AutoModel::RobertaTokenCls(RobertaForTokenClassification::from_pretrained_with_config(dir, config, device, new_head)?),
            })
        };
        match load(false) {
            // The folder has no head, or one for another number of labels: a fresh one.
            Err(Error::MissingTensor { .. } | Error::ShapeMismatch { .. }) => load(true),
            other => other,
        }
    }

    /// Loads a llama.cpp GGUF file (Llama architecture, dequantized to f32) as a causal LM.
    ///
    /// # Errors
    /// See [`LlamaForCausalLM::from_gguf`].
    pub fn from_gguf(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Ok(AutoModel::Llama(LlamaForCausalLM::from_gguf(path.as_ref(), device)?))
    }

    /// The end-of-sequence ids of a causal LM's config (empty for other heads).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        match self {
            AutoModel::Llama(m) => m.config().eos_token_ids(),
            _ => Vec::new(),
        }
    }

    /// Loads `dir` with the head a PEFT task type asks for (`None`: as [`AutoModel::from_pretrained`]).
    pub fn from_pretrained_for_task(dir: impl AsRef<Path>, task: Option<TaskType>, device: &Device) -> Result<Self> {
        Self::from_pretrained(dir, task.map(Head::from_task), device)
    }

    /// The head's output on `inputs` (see [`AutoOutput`] for the shapes per head).
    ///
    /// # Errors
    /// [`Error::InvalidState`] when an input the model needs is missing, and the family's own
    /// errors (Whisper's feature length).
    pub fn forward(&self, inputs: &AutoInputs) -> Result<AutoOutput> {
        Ok(TaskModel::forward_task(self, inputs.clone())?.logits)
    }

    /// Generates new tokens: from `input_ids` for causal LMs, after encoding the source for
    /// encoder-decoders. See [`crate::generation`] for the options.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for heads that do not generate; missing inputs; the config's errors.
    pub fn generate(&self, inputs: &AutoInputs, config: &GenerationConfig) -> Result<Generated> {
        TaskModel::generate(self, inputs.clone(), config)
    }

    /// The transformers `model_type` family of the loaded model, for messages.
    pub fn family(&self) -> &'static str {
        match self {
            AutoModel::Llama(_) => "llama",
            AutoModel::Gpt2(_) | AutoModel::Gpt2Lm(_) | AutoModel::Gpt2SeqCls(_) | AutoModel::Gpt2TokenCls(_) | AutoModel::Gpt2Qa(_) => "gpt2",
            AutoModel::Bloom(_) | AutoModel::BloomLm(_) | AutoModel::BloomSeqCls(_) | AutoModel::BloomTokenCls(_) | AutoModel::BloomQa(_) => "bloom",
            AutoModel::Bert(_) | AutoModel::BertSeqCls(_) | AutoModel::BertTokenCls(_) | AutoModel::BertQa(_) => "bert",
            AutoModel::RobertaSeqCls(_) | AutoModel::RobertaTokenCls(_) | AutoModel::RobertaQa(_) => "roberta",
            AutoModel::Whisper(_) | AutoModel::WhisperGen(_) => "whisper",
            AutoModel::T5Gen(_) | AutoModel::T5Enc(_) | AutoModel::T5SeqCls(_) | AutoModel::T5TokenCls(_) | AutoModel::T5Qa(_) => "t5",
            AutoModel::Vit(_) | AutoModel::VitCls(_) => "vit",
            AutoModel::Segformer(_) | AutoModel::SegformerSeg(_) | AutoModel::SegformerCls(_) => "segformer",
        }
    }
}

impl AdapterSites for AutoModel {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        on_model!(self, m => m.visit_sites_mut(f))
    }

    fn output_head_paths(&self) -> Vec<String> {
        on_model!(self, m => m.output_head_paths())
    }

    fn default_target_modules(&self) -> Vec<String> {
        on_model!(self, m => m.default_target_modules())
    }

    fn model_type(&self) -> Option<String> {
        on_model!(self, m => m.model_type())
    }

    fn default_modules_to_save(&self, task: TaskType) -> Vec<String> {
        on_model!(self, m => m.default_modules_to_save(task))
    }

    fn tied_weights(&self) -> Vec<(String, String)> {
        on_model!(self, m => m.tied_weights())
    }

    fn legacy_path(&self, path: &str) -> Option<String> {
        on_model!(self, m => m.legacy_path(path))
    }

    fn legacy_target_names(&self, name: &str) -> Vec<String> {
        on_model!(self, m => m.legacy_target_names(name))
    }

    fn name_or_path(&self) -> Option<String> {
        on_model!(self, m => m.name_or_path())
    }

    fn model_dims(&self) -> Option<peft_core::ModelDims> {
        on_model!(self, m => m.model_dims())
    }
}
