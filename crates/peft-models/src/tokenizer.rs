//! A thin layer over Hugging Face `tokenizers`: `tokenizer.json` in, token ids and padded
//! batches with attention masks out, errors as [`peft_core::Error`].

use burn::tensor::{Device, Int, Tensor, TensorData};
use peft_core::{Error, Result};
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod gguf;

/// The file name transformers saves a fast tokenizer under.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Which side of a shorter sequence padding goes (left for batched generation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PaddingSide {
    /// Pads before the tokens.
    Left,
    /// Pads after the tokens (training, classification).
    #[default]
    Right,
}

/// Token ids of several texts, padded to the same length, with their attention masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedBatch {
    /// One row per text, all of the same length.
    pub input_ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding, row by row.
    pub attention_mask: Vec<Vec<u32>>,
}

impl EncodedBatch {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// The ids and the mask as integer tensors.
    ///
    /// # Shapes
    /// - outputs: `[batch, len]` each
    pub fn to_tensors(&self, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
        (to_tensor(&self.input_ids, device), to_tensor(&self.attention_mask, device))
    }
}

fn to_tensor(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let width = rows.first().map_or(0, Vec::len);
    let flat: Vec<i64> = rows.iter().flatten().map(|x| i64::from(*x)).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device)
}

/// A tokenizer read from transformers' `tokenizer.json`.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The padding id the file configures (its padding itself is switched off, see `from_json`).
    pad_id: Option<u32>,
    path: PathBuf,
}

impl Tokenizer {
    /// Reads a `tokenizer.json`.
    ///
    /// Fails with [`Error::Io`] naming the file when it cannot be read and [`Error::Format`] when
    /// it is not a tokenizer.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
        Self::from_json(&text, path)
    }

    /// Parses the text of a `tokenizer.json`; `path` only names the source in errors.
    ///
    /// Fails with [`Error::Format`] when it is not a tokenizer.
    pub fn from_json(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // tokenizers 0.22 panics (an `expect` in its decoder's deserializer) on a syntax error
        // inside `decoder`: check the whole text is JSON first, so a broken file is an error.
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| format_error(path, e))?;
        if let Some(missing) = json.get("post_processor").and_then(undeclared_special_token) {
            return Err(format_error(path, format!("the post-processor's template uses special token `{missing}`, which its `special_tokens` does not define")));
        }
        let mut inner = tokenizers::Tokenizer::from_str(text).map_err(|e| format_error(path, e))?;
        // Files saved by sentence-transformers configure fixed padding to 128 and truncation at
        // 128; transformers ignores both unless a call asks, and so does this type: with them,
        // every text came back as 128 ids padded with `[PAD]`, so truncating it afterwards cut off
        // `[SEP]` and left padding the attention mask marks as real.
        let pad_id = inner.get_padding().map(|p| p.pad_id);
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| format_error(path, e))?;
        Ok(Tokenizer { inner, pad_id, path: path.into() })
    }

    /// Reads `dir/tokenizer.json`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join(TOKENIZER_FILE))
    }

    /// The token ids of `text`, with the tokenizer's special tokens (BOS, ...) when asked; never
    /// padded or truncated (the file's padding and truncation settings are ignored, as
    /// transformers ignores them).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, add_special_tokens).map_err(|e| format_error(&self.path, e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Several texts, padded with `pad_id` on `side` to the longest.
    pub fn encode_batch(&self, texts: &[&str], add_special_tokens: bool, pad_id: u32, side: PaddingSide) -> Result<EncodedBatch> {
        let rows = texts.iter().map(|t| self.encode(t, add_special_tokens)).collect::<Result<Vec<_>>>()?;
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut batch = EncodedBatch { input_ids: Vec::with_capacity(rows.len()), attention_mask: Vec::with_capacity(rows.len()) };
        for row in rows {
            let pads = width - row.len();
            let (mut ids, mut mask) = (Vec::with_capacity(width), Vec::with_capacity(width));
            if side == PaddingSide::Left {
                ids.extend(std::iter::repeat_n(pad_id, pads));
                mask.extend(std::iter::repeat_n(0, pads));
            }
            mask.extend(std::iter::repeat_n(1, row.len()));
            ids.extend(row);
            if side == PaddingSide::Right {
                ids.extend(std::iter::repeat_n(pad_id, pads));
                mask.extend(std::iter::repeat_n(0, pads));
            }
            batch.input_ids.push(ids);
            batch.attention_mask.push(mask);
        }
        Ok(batch)
    }

    /// The text of `ids`, leaving special tokens out when asked.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| format_error(&self.path, e))
    }

    /// The id of a token of the vocabulary (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The padding id the file configures, if it configures padding.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// The wrapped `tokenizers` tokenizer, for everything this type does not cover.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// A special token a `TemplateProcessing` template names but does not define, searched through
/// nested processors. tokenizers 0.22 checks this when building a template, not when reading one,
/// and then panics on the first encode. Any object with a `single` or `pair` template counts,
/// whatever its `type` says: tokenizers also reads a template whose `type` is misspelt.
fn undeclared_special_token(processor: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let Value::Object(map) = processor else {
        return processor.as_array()?.iter().find_map(undeclared_special_token);
    };
    if map.contains_key("single") || map.contains_key("pair") {
        let defined = map.get("special_tokens").and_then(Value::as_object);
        let pieces = ["single", "pair"].into_iter().filter_map(|k| map.get(k));
        let named = pieces.flat_map(|t| match t {
            Value::String(s) => s.split_whitespace().map(Value::from).collect(),
            Value::Array(items) => items.clone(),
            _ => Vec::new(),
        });
        for piece in named {
            let id = match &piece {
                Value::String(p) if !p.starts_with('$') => p.split(':').next().map(str::to_string),
                // `{"SpecialToken": {"id": .., "type_id": ..}}`, or serde's sequence form of the
                // same struct, `{"SpecialToken": [id, type_id]}`, which tokenizers accepts too.
                Value::Object(o) => {
                    o.get("SpecialToken").and_then(|t| t.get("id").or_else(|| t.get(0))).and_then(Value::as_str).map(str::to_string)
                }
                _ => None,
            };
            if let Some(id) = id.filter(|id| !defined.is_some_and(|d| d.contains_key(id))) {
                return Some(id);
            }
        }
    }
    map.values().find_map(undeclared_special_token)
}

fn format_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Format { path: path.into(), format: "tokenizer.json", message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS: &str = r#"{"version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 0, "content": "<pad>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"<pad>": 0, "<unk>": 1, "hello": 2, "world": 3},
                  "unk_token": "<unk>"}}"#;

    fn tokenizer() -> (tempfile::TempDir, Tokenizer) {
        let dir = tempfile::tempdir().expect("succeeds");
        std::fs::write(dir.path().join(TOKENIZER_FILE), WORDS).expect("succeeds");
        let t = Tokenizer::from_dir(dir.path()).expect("succeeds");
        (dir, t)
    }

    #[test]
    fn encode_decode_and_pad() {
        let (_dir, t) = tokenizer();
        assert_eq!(t.encode("hello world hello", false).expect("succeeds"), vec![2, 3, 2]);
        assert_eq!(t.encode("bye", false).expect("succeeds"), vec![1]);
        assert_eq!(t.decode(&[2, 3], false).expect("succeeds"), "hello world");
        assert_eq!(t.vocab_size(), 4);
        let right = t.encode_batch(&["hello world", "world"], false, 0, PaddingSide::Right).expect("succeeds");
        assert_eq!(right.input_ids, vec![vec![2, 3], vec![3, 0]]);
        assert_eq!(right.attention_mask, vec![vec![1, 1], vec![1, 0]]);
        let left = t.encode_batch(&["hello world", "world"], false, 0, PaddingSide::Left).expect("succeeds");
        assert_eq!(left.input_ids, vec![vec![2, 3], vec![0, 3]]);
        let (ids, mask) = left.to_tensors(&peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in"));
        assert_eq!(ids.dims(), [2, 2]);
        assert_eq!(mask.into_data().convert::<i64>().try_to_vec::<i64>().expect("succeeds"), vec![1, 1, 0, 1]);
    }

    #[test]
    fn the_files_padding_and_truncation_are_not_applied() {
        // As in sentence-transformers' MiniLM `tokenizer.json`: fixed padding, truncation at 4.
        let padded = WORDS
            .replace(
                "\"truncation\": null",
                r#""truncation": {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0}"#,
            )
            .replace(
                "\"padding\": null",
                r#""padding": {"strategy": {"Fixed": 6}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "<pad>"}"#,
            );
        let t = Tokenizer::from_json(&padded, "tokenizer.json").expect("loads");
        assert_eq!(t.encode("hello world", false).expect("encodes"), vec![2, 3]);
        assert_eq!(t.encode("hello world hello world hello", false).expect("encodes"), vec![2, 3, 2, 3, 2]);
        assert_eq!(t.pad_token_id(), Some(0));
        assert_eq!(Tokenizer::from_json(WORDS, "tokenizer.json").expect("loads").pad_token_id(), None);
    }

    #[test]
    fn a_syntax_error_inside_the_decoder_is_an_error_not_a_panic() {
        // Found by `fuzz/` (target `tokenizer`): tokenizers 0.22 panicked on this.
        let broken = WORDS.replace("\"decoder\": null", "\"decoder\": {\"type\": \"Fuse\u{1}\"}");
        let err = Tokenizer::from_json(&broken, "tokenizer.json").expect_err("a control character in a string");
        assert!(matches!(err, Error::Format { format: "tokenizer.json", .. }), "{err}");
    }

    #[test]
    fn a_template_naming_an_undefined_special_token_is_an_error_not_a_panic() {
        // Found by `fuzz/` (target `tokenizer`): tokenizers 0.22 read it, then panicked encoding.
        let template = r#""post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "[CLQ]", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}}], "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [0], "tokens": ["<pad>"]}}}"#;
        let broken = WORDS.replace("\"post_processor\": null", template);
        let err = Tokenizer::from_json(&broken, "tokenizer.json").expect_err("an undefined special token");
        assert!(err.to_string().contains("[CLQ]"), "{err}");
        let fixed = broken.replace("[CLQ]", "[CLS]");
        let t = Tokenizer::from_json(&fixed, "tokenizer.json").expect("a defined one loads");
        assert_eq!(t.encode("hello", true).expect("encodes"), vec![0, 2]);
        // Found by `fuzz/` later: with the `type` misspelt, tokenizers still reads the template.
        let misspelt = broken.replace("\"TemplateProcessing\"", "\"TemplateProcessin;\"");
        let err = Tokenizer::from_json(&misspelt, "tokenizer.json").expect_err("an undefined special token, whatever the type");
        assert!(err.to_string().contains("[CLQ]"), "{err}");
    }

    #[test]
    fn file_errors_are_typed() {
        let dir = tempfile::tempdir().expect("succeeds");
        let err = Tokenizer::from_dir(dir.path()).expect_err("fails");
        assert!(matches!(&err, Error::Io { path, .. } if path.ends_with(TOKENIZER_FILE)), "{err}");
        std::fs::write(dir.path().join(TOKENIZER_FILE), "{\"model\": 3}").expect("succeeds");
        let err = Tokenizer::from_dir(dir.path()).expect_err("fails");
        assert!(matches!(err, Error::Format { format: "tokenizer.json", .. }), "{err}");
    }
}
