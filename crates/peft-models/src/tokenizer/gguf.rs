//! A byte-level BPE tokenizer (`tokenizer.ggml.model = "gpt2"`) rebuilt from a GGUF file's
//! metadata, as transformers' GGUF loader builds it: the token list as the vocabulary, the
//! merges, tokens marked CONTROL (3) as special and USER_DEFINED (4) as added tokens, the
//! split named by `tokenizer.ggml.pre`, and BOS/EOS added when `add_bos_token`/`add_eos_token`.

use peft_core::{Error, Result};
use peft_io::gguf::{GgufFile, Value};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::Tokenizer;

/// llama.cpp's token types that become added tokens.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// Llama 3's split (also `llama-bpe`, `llama-v3`, `smaug-bpe`), applied before the byte mapping.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` names given their own split; any other name (`gpt2`, `smollm`, ...)
/// gets GPT-2's, as transformers does.
const SPLITS: [(&str, &str); 4] = [("llama3", LLAMA3_SPLIT), ("llama-bpe", LLAMA3_SPLIT), ("llama-v3", LLAMA3_SPLIT), ("smaug-bpe", LLAMA3_SPLIT)];

/// GPT-2's printable spelling of each byte: printable Latin-1 bytes are themselves, the rest
/// are shifted to `U+0100..` in byte order, so every byte string is a string of visible chars.
fn byte_chars() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut out = ['\0'; 256];
    let mut shifted = 0x100;
    for b in 0..256u32 {
        let code = if printable(b) {
            b
        } else {
            shifted += 1;
            shifted - 1
        };
        out[b as usize] = char::from_u32(code).unwrap_or('\u{fffd}');
    }
    out
}

impl Tokenizer {
    /// The tokenizer stored in a GGUF file's metadata; only byte-level BPE (`gpt2`) is supported.
    ///
    /// # Errors
    /// [`GgufFile::open`]'s errors; [`Error::Unsupported`] for another `tokenizer.ggml.model`;
    /// [`Error::Format`] naming the file when the token list or a merge is missing or malformed.
    pub fn from_gguf(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_gguf_file(&GgufFile::open(path)?)
    }

    /// The tokenizer of a GGUF header already read ([`GgufFile::open`] or
    /// [`GgufFile::from_bytes`]); errors as [`Tokenizer::from_gguf`], naming [`GgufFile::path`].
    pub fn from_gguf_file(file: &GgufFile) -> Result<Self> {
        let path = file.path();
        let bad = |message: String| Error::Format { path: path.into(), format: "GGUF tokenizer", message };
        let kind = file.get("tokenizer.ggml.model").and_then(Value::as_str).unwrap_or("(none)");
        if kind != "gpt2" {
            return Err(Error::Unsupported { what: format!("GGUF tokenizer model `{kind}` in {}", path.display()), supported: "gpt2 (byte-level BPE)".into() });
        }
        let strings = |key: &str| -> Result<Vec<&str>> {
            let items = file.get(key).and_then(Value::as_array).ok_or_else(|| bad(format!("`{key}` is missing or not an array")))?;
            items.iter().map(|v| v.as_str().ok_or_else(|| bad(format!("`{key}` holds a non-string")))).collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| bad(format!("merge `{m}` is not two tokens"))))
            .collect::<Result<Vec<_>>>()?;
        let types: Vec<i64> = match file.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
            Some(items) => items.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
            None => Vec::new(),
        };

        // A token written with characters outside the byte alphabet (a raw special token) is
        // respelled byte by byte, as transformers does, so the BPE model can hold it.
        let chars = byte_chars();
        let alphabet: std::collections::HashSet<char> = chars.iter().copied().collect();
        let spelled = |t: &str| t.chars().all(|c| alphabet.contains(&c));
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let key = if spelled(t) { t.to_string() } else { t.bytes().map(|b| chars[b as usize]).collect() };
                (key, i as u32)
            })
            .collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| bad(e.to_string()))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);

        let pre = file.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
        let pre_tokenizer: PreTokenizerWrapper = match SPLITS.iter().find(|(name, _)| *name == pre) {
            Some((_, regex)) => {
                let split = Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
                    .map_err(|e| bad(e.to_string()))?;
                Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into()
            }
            None => ByteLevel::new(false, true, true).into(),
        };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let marked = |kind: i64| tokens.iter().zip(&types).filter(move |(_, t)| **t == kind).map(|(tok, _)| *tok);
        // A control token spelled outside the byte alphabet is a converter mislabel (transformers
        // skips it too): adding it would grow the vocabulary past the model's.
        let control: Vec<AddedToken> = marked(CONTROL).filter(|t| spelled(t)).map(|t| AddedToken::from(t, true).normalized(false)).collect();
        inner.add_special_tokens(&control);
        let user: Vec<AddedToken> = marked(USER_DEFINED).map(|t| AddedToken::from(t, false).normalized(false)).collect();
        inner.add_tokens(&user);

        let flag = |key: &str| file.get(key).and_then(Value::as_bool).unwrap_or(false);
        let special = |key: &str| -> Option<(String, u32)> {
            let id = file.get(key)?.as_u64()?;
            tokens.get(usize::try_from(id).ok()?).map(|t| (t.to_string(), id as u32))
        };
        let bos = special("tokenizer.ggml.bos_token_id").filter(|_| flag("tokenizer.ggml.add_bos_token"));
        let eos = special("tokenizer.ggml.eos_token_id").filter(|_| flag("tokenizer.ggml.add_eos_token"));
        if bos.is_some() || eos.is_some() {
            let template = [bos.as_ref().map(|b| b.0.clone()), Some("$A".into()), eos.as_ref().map(|e| e.0.clone())]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            let processor = TemplateProcessing::builder()
                .try_single(template)
                .map_err(|e| bad(e.to_string()))?
                .special_tokens(bos.into_iter().chain(eos).collect::<Vec<_>>())
                .build()
                .map_err(|e| bad(e.to_string()))?;
            inner.with_post_processor(Some(processor));
        }
        Ok(Tokenizer { inner, pad_id: None, path: path.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let chars = byte_chars();
        assert_eq!((chars[b'A' as usize], chars[b' ' as usize], chars[b'\n' as usize]), ('A', 'Ġ', 'Ċ'));
        let distinct: std::collections::HashSet<char> = chars.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(distinct, tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet().into_iter().collect());
    }
}
