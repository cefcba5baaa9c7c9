//! Which head a folder is loaded with.

use peft_core::{Error, Result, TaskType};
use std::path::Path;

/// A task head, as transformers names its classes (`*ForCausalLM`, `*ForSequenceClassification`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Head {
    /// Next-token logits (`*ForCausalLM`, `*LMHeadModel`).
    CausalLm,
    /// Encoder-decoder logits (`*ForConditionalGeneration`).
    Seq2SeqLm,
    /// One class per sequence.
    SequenceClassification,
    /// One class per token.
    TokenClassification,
    /// Start and end logits per token.
    QuestionAnswering,
    /// The bare model's last hidden states.
    FeatureExtraction,
    /// One class per image.
    ImageClassification,
    /// One class per pixel (at a reduced resolution).
    SemanticSegmentation,
}

impl Head {
    /// The head a PEFT task type asks for (`SEQ_CLS` → sequence classification).
    pub fn from_task(task: TaskType) -> Head {
        match task {
            TaskType::CausalLm => Head::CausalLm,
            TaskType::Seq2SeqLm => Head::Seq2SeqLm,
            TaskType::SeqCls => Head::SequenceClassification,
            TaskType::TokenCls => Head::TokenClassification,
            TaskType::QuestionAns => Head::QuestionAnswering,
            TaskType::FeatureExtraction => Head::FeatureExtraction,
        }
    }

    /// The head of a transformers class name (`GPT2LMHeadModel` → causal LM).
    pub fn from_class(name: &str) -> Option<Head> {
        const SUFFIXES: &[(&str, Head)] = &[
            ("ForCausalLM", Head::CausalLm),
            ("LMHeadModel", Head::CausalLm),
            ("ForConditionalGeneration", Head::Seq2SeqLm),
            ("ForSequenceClassification", Head::SequenceClassification),
            ("ForTokenClassification", Head::TokenClassification),
            ("ForQuestionAnswering", Head::QuestionAnswering),
            ("ForImageClassification", Head::ImageClassification),
            ("ForSemanticSegmentation", Head::SemanticSegmentation),
            ("EncoderModel", Head::FeatureExtraction),
            ("Model", Head::FeatureExtraction),
        ];
        SUFFIXES.iter().find(|(s, _)| name.ends_with(s)).map(|(_, h)| *h)
    }

    /// The name used in messages and flags.
    pub fn name(self) -> &'static str {
        match self {
            Head::CausalLm => "causal-lm",
            Head::Seq2SeqLm => "seq2seq-lm",
            Head::SequenceClassification => "sequence-classification",
            Head::TokenClassification => "token-classification",
            Head::QuestionAnswering => "question-answering",
            Head::FeatureExtraction => "feature-extraction",
            Head::ImageClassification => "image-classification",
            Head::SemanticSegmentation => "semantic-segmentation",
        }
    }
}

/// Every `model_type` [`super::AutoModel`] loads, with its heads (the first is the default).
pub const SUPPORTED: &[(&str, &[Head])] = &[
    ("llama", &[Head::CausalLm]),
    ("mistral", &[Head::CausalLm]),
    ("qwen2", &[Head::CausalLm]),
    ("gpt2", &[Head::CausalLm, Head::SequenceClassification, Head::TokenClassification, Head::QuestionAnswering, Head::FeatureExtraction]),
    ("bloom", &[Head::CausalLm, Head::SequenceClassification, Head::TokenClassification, Head::QuestionAnswering, Head::FeatureExtraction]),
    ("bert", &[Head::FeatureExtraction, Head::SequenceClassification, Head::TokenClassification, Head::QuestionAnswering]),
    ("roberta", &[Head::FeatureExtraction, Head::SequenceClassification, Head::TokenClassification, Head::QuestionAnswering]),
    ("t5", &[Head::Seq2SeqLm, Head::FeatureExtraction, Head::SequenceClassification, Head::TokenClassification, Head::QuestionAnswering]),
    ("mt5", &[Head::Seq2SeqLm, Head::FeatureExtraction, Head::SequenceClassification, Head::TokenClassification, Head::QuestionAnswering]),
    ("whisper", &[Head::Seq2SeqLm, Head::FeatureExtraction]),
    ("vit", &[Head::ImageClassification, Head::FeatureExtraction]),
    ("segformer", &[Head::SemanticSegmentation, Head::ImageClassification, Head::FeatureExtraction]),
];

/// What `config.json` says about the architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// `model_type` (`"llama"`).
    pub model_type: String,
    /// `architectures` (`["LlamaForCausalLM"]`), possibly empty.
    pub architectures: Vec<String>,
}

impl ModelInfo {
    /// Reads `dir/config.json`.
    ///
    /// Fails with [`Error::Io`] naming the file, or [`Error::Json`] when it is not JSON.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("cannot read the model config", &path, e))?;
        Self::from_json(&text, &path)
    }

    /// Reads the text of a `config.json`; `path` only names the source in errors.
    ///
    /// Fails with [`Error::Json`] when it is not JSON; missing keys give an empty `model_type`
    /// (which [`ModelInfo::head`] reports as unsupported) and no architectures.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Json { path: path.into(), source: e })?;
        let model_type = json.get("model_type").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let architectures = json
            .get("architectures")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        Ok(ModelInfo { model_type, architectures })
    }

    /// The head to load: `wanted` if given, else the one `architectures` names, else the
    /// family's default. Fails with [`Error::Unsupported`] listing what is supported.
    pub fn head(&self, wanted: Option<Head>) -> Result<Head> {
        let Some((_, heads)) = SUPPORTED.iter().find(|(t, _)| *t == self.model_type) else {
            return Err(unsupported(&format!("model_type `{}`", self.model_type)));
        };
        let from_file = self.architectures.iter().find_map(|a| Head::from_class(a)).filter(|h| heads.contains(h));
        let head = wanted.or(from_file).unwrap_or(heads[0]);
        if heads.contains(&head) {
            Ok(head)
        } else {
            Err(unsupported(&format!("the {} head for model_type `{}`", head.name(), self.model_type)))
        }
    }
}

fn unsupported(what: &str) -> Error {
    let list: Vec<String> = SUPPORTED
        .iter()
        .map(|(t, heads)| format!("{t} ({})", heads.iter().map(|h| h.name()).collect::<Vec<_>>().join(", ")))
        .collect();
    Error::Unsupported { what: what.to_string(), supported: list.join("; ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(model_type: &str, arch: &[&str]) -> ModelInfo {
        ModelInfo { model_type: model_type.into(), architectures: arch.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn head_from_task_then_file_then_family() {
        let gpt2 = info("gpt2", &["GPT2ForTokenClassification"]);
        assert_eq!(gpt2.head(Some(Head::CausalLm)).ok(), Some(Head::CausalLm));
        assert_eq!(gpt2.head(None).ok(), Some(Head::TokenClassification));
        assert_eq!(info("gpt2", &[]).head(None).ok(), Some(Head::CausalLm));
        assert_eq!(info("bert", &["BertModel"]).head(None).ok(), Some(Head::FeatureExtraction));
    }

    #[test]
    fn unsupported_names_what_is_supported() {
        let err = info("mamba", &[]).head(None).expect_err("unknown family").to_string();
        assert!(err.contains("mamba") && err.contains("llama (causal-lm)"), "{err}");
        let err = info("llama", &[]).head(Some(Head::TokenClassification)).expect_err("no such head").to_string();
        assert!(err.contains("token-classification"), "{err}");
    }
}
