//! `TaskType` and `PeftType`, spelled as the Python library spells them in `adapter_config.json`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The task a model is adapted for; it decides the head and the `modules_to_save` defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskType {
    /// Sequence classification (`SEQ_CLS`): the classifier head is trained along.
    #[serde(rename = "SEQ_CLS")]
    SeqCls,
    /// Sequence-to-sequence language modelling (`SEQ_2_SEQ_LM`).
    #[serde(rename = "SEQ_2_SEQ_LM")]
    Seq2SeqLm,
    /// Causal language modelling (`CAUSAL_LM`).
    #[serde(rename = "CAUSAL_LM")]
    CausalLm,
    /// Token classification (`TOKEN_CLS`).
    #[serde(rename = "TOKEN_CLS")]
    TokenCls,
    /// Extractive question answering (`QUESTION_ANS`).
    #[serde(rename = "QUESTION_ANS")]
    QuestionAns,
    /// Hidden states as features (`FEATURE_EXTRACTION`).
    #[serde(rename = "FEATURE_EXTRACTION")]
    FeatureExtraction,
}

impl TaskType {
    /// Every task type, in the Python library's order.
    pub const ALL: [TaskType; 6] = [
        TaskType::SeqCls,
        TaskType::Seq2SeqLm,
        TaskType::CausalLm,
        TaskType::TokenCls,
        TaskType::QuestionAns,
        TaskType::FeatureExtraction,
    ];

    /// The name used in `adapter_config.json` (`"CAUSAL_LM"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::SeqCls => "SEQ_CLS",
            TaskType::Seq2SeqLm => "SEQ_2_SEQ_LM",
            TaskType::CausalLm => "CAUSAL_LM",
            TaskType::TokenCls => "TOKEN_CLS",
            TaskType::QuestionAns => "QUESTION_ANS",
            TaskType::FeatureExtraction => "FEATURE_EXTRACTION",
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The adapter method, as `peft_type` in `adapter_config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeftType {
    /// Low-rank adaptation.
    #[serde(rename = "LORA")]
    Lora,
    /// Adaptive-budget LoRA.
    #[serde(rename = "ADALORA")]
    AdaLora,
    /// Infused adapters by inhibiting and amplifying inner activations.
    #[serde(rename = "IA3")]
    Ia3,
    /// Soft prompts prepended to the input embeddings.
    #[serde(rename = "PROMPT_TUNING")]
    PromptTuning,
    /// Soft prompts produced by a prompt encoder.
    #[serde(rename = "P_TUNING")]
    PTuning,
    /// Learned key/value prefixes in every layer.
    #[serde(rename = "PREFIX_TUNING")]
    PrefixTuning,
    /// Gated adaption prompts in the top layers.
    #[serde(rename = "ADAPTION_PROMPT")]
    AdaptionPrompt,
}

impl PeftType {
    /// The name used in `adapter_config.json` (`"LORA"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PeftType::Lora => "LORA",
            PeftType::AdaLora => "ADALORA",
            PeftType::Ia3 => "IA3",
            PeftType::PromptTuning => "PROMPT_TUNING",
            PeftType::PTuning => "P_TUNING",
            PeftType::PrefixTuning => "PREFIX_TUNING",
            PeftType::AdaptionPrompt => "ADAPTION_PROMPT",
        }
    }
}

impl fmt::Display for PeftType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
