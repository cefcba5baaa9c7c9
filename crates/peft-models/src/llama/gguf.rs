//! `LlamaForCausalLM` from a llama.cpp GGUF file: config from the `llama.*` metadata, tensors
//! renamed to transformers' keys and dequantized, q/k rows put back in transformers' order.

use burn::tensor::{Device, TensorData};
use peft_core::{Error, Result};
use peft_core::adapted::packed::PackedBase;
use peft_core::{AdapterSites, SiteMut};
use peft_io::gguf::{GgufFile, GgufPacked, Value};
use std::collections::HashMap;
use peft_io::stored::{LazyTensors, StoredTensor};
use peft_io::weights::{LoadOptions, load_into};
use serde_json::{Map, Value as Json};
use std::path::Path;
use std::sync::Arc;

use super::config::LlamaConfig;
use crate::config_file::TokenIds;
use super::causal_lm::LlamaForCausalLM;
use crate::causal::tie;

/// GGUF name of a per-layer tensor (`blk.N.<name>`) and its transformers module under
/// `model.layers.N`.
const LAYER_NAMES: [(&str, &str); 9] = [
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// GGUF names of the tensors outside the layers and their transformers modules.
const TOP_NAMES: [(&str, &str); 3] = [("token_embd", "model.embed_tokens"), ("output_norm", "model.norm"), ("output", "lm_head")];

/// The transformers key of a GGUF tensor name (`blk.3.attn_q.weight` ->
/// `model.layers.3.self_attn.q_proj.weight`), or `None` for a name the Llama model does not have.
pub fn gguf_tensor_key(gguf_name: &str) -> Option<String> {
    let (module, param) = gguf_name.rsplit_once('.')?;
    if let Some(rest) = module.strip_prefix("blk.") {
        let (layer, name) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let (_, hf) = LAYER_NAMES.iter().find(|(g, _)| *g == name)?;
        return Some(format!("model.layers.{layer}.{hf}.{param}"));
    }
    let (_, hf) = TOP_NAMES.iter().find(|(g, _)| *g == module)?;
    Some(format!("{hf}.{param}"))
}

impl LlamaConfig {
    /// The config a llama.cpp `llama` GGUF file describes: `llama.embedding_length`,
    /// `feed_forward_length`, `block_count`, `attention.head_count(_kv)`,
    /// `attention.layer_norm_rms_epsilon`, `rope.freq_base`, `context_length`, the vocabulary
    /// size (`llama.vocab_size`, else the token list), the tokenizer's bos/eos/pad ids, and tied
    /// embeddings when the file has no `output.weight`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for another `general.architecture`, RoPE scaling or partial
    /// rotary dimensions; [`Error::Format`] naming the file for a missing or mistyped key; and
    /// [`LlamaConfig::validate`]'s errors.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.get("general.architecture").and_then(Value::as_str).unwrap_or("(none)");
        if arch != "llama" {
            return Err(Error::Unsupported { what: format!("GGUF architecture `{arch}` in {}", file.path().display()), supported: "llama".into() });
        }
        let int = |key: &str| -> Result<Option<usize>> {
            match file.get(key) {
                None => Ok(None),
                Some(v) => v.as_u64().and_then(|n| usize::try_from(n).ok()).map(Some).ok_or_else(|| bad(file, key, v, "an unsigned integer")),
            }
        };
        let need = |key: &str| int(key)?.ok_or_else(|| bad(file, key, &Value::String("absent".into()), "present"));
        let float = |key: &str| -> Result<Option<f64>> {
            file.get(key).map(|v| v.as_f64().ok_or_else(|| bad(file, key, v, "a float"))).transpose()
        };
        let heads = need("llama.attention.head_count")?;
        let hidden = need("llama.embedding_length")?;
        let head_dim = int("llama.attention.key_length")?.unwrap_or(hidden / heads.max(1));
        if let Some(rot) = int("llama.rope.dimension_count")?.filter(|r| *r != head_dim) {
            return Err(Error::Unsupported { what: format!("partial rotary embedding ({rot} of {head_dim} dims)"), supported: "RoPE over the whole head".into() });
        }
        if file.get("llama.rope.scaling.type").is_some() || file.tensor_info("rope_freqs.weight").is_some() {
            return Err(Error::Unsupported { what: "RoPE scaling in a GGUF file".into(), supported: "unscaled RoPE".into() });
        }
        let tokens = file.get("tokenizer.ggml.tokens").and_then(Value::as_array).map(<[Value]>::len);
        let vocab = match int("llama.vocab_size")?.or(tokens) {
            Some(v) => v,
            None => file.tensor_info("token_embd.weight").and_then(|t| t.shape.first().copied()).ok_or_else(|| {
                bad(file, "llama.vocab_size", &Value::String("absent".into()), "present, or a token list")
            })?,
        };
        let token = |key: &str| -> Result<Option<u32>> { Ok(int(key)?.and_then(|v| u32::try_from(v).ok())) };
        let mut rope = Map::new();
        rope.insert("rope_type".into(), Json::from("default"));
        rope.insert("rope_theta".into(), Json::from(float("llama.rope.freq_base")?.unwrap_or(10000.0)));
        let config = LlamaConfig {
            model_type: "llama".into(),
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: need("llama.feed_forward_length")?,
            num_hidden_layers: need("llama.block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: Some(int("llama.attention.head_count_kv")?.unwrap_or(heads)),
            head_dim: Some(head_dim),
            max_position_embeddings: int("llama.context_length")?.unwrap_or(2048),
            rms_norm_eps: float("llama.attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6),
            tie_word_embeddings: file.tensor_info("output.weight").is_none(),
            rope_parameters: Some(rope),
            bos_token_id: token("tokenizer.ggml.bos_token_id")?,
            eos_token_id: token("tokenizer.ggml.eos_token_id")?.map(TokenIds::One),
            pad_token_id: token("tokenizer.ggml.padding_token_id")?,
            ..LlamaConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

fn bad(file: &GgufFile, key: &str, value: &Value, want: &str) -> Error {
    Error::Format { path: file.path().into(), format: "GGUF", message: format!("metadata `{key}` is {value:?}; it must be {want}") }
}

impl LlamaForCausalLM {
    /// Loads a llama.cpp GGUF file (`general.architecture = llama`): the config from its
    /// metadata ([`LlamaConfig::from_gguf`]), every tensor dequantized to `f32` and renamed to
    /// transformers' keys ([`gguf_tensor_key`]), q/k rows un-permuted, and `lm_head` tied to
    /// the embedding when the file has no `output.weight`.
    ///
    /// # Errors
    /// The reader's errors ([`GgufFile::open`]), [`LlamaForCausalLM`]'s config errors,
    /// [`Error::MissingTensor`] naming the file, and [`Error::ShapeMismatch`].
    pub fn from_gguf(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_gguf_with(path, device, false)
    }

    /// As [`LlamaForCausalLM::from_gguf`], but the projections stored in block formats (Q4_0,
    /// Q4_1, Q8_0, Q4_K, Q5_K, Q6_K) stay packed in memory and are dequantized inside each
    /// forward and backward (QLoRA; see [`peft_core::adapted::packed`]). Embeddings and norms are
    /// read as `f32`. Adapters attach and train as on any model; merging stores the merged layers
    /// dequantized.
    ///
    /// # Errors
    /// As [`LlamaForCausalLM::from_gguf`].
    pub fn from_gguf_packed(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_gguf_with(path, device, true)
    }

    fn from_gguf_with(path: impl AsRef<Path>, device: &Device, packed: bool) -> Result<Self> {
        let file = GgufFile::open(path.as_ref())?;
        let config = LlamaConfig::from_gguf(&file)?;
        let path = file.path().to_path_buf();
        let (tensors, packed) = read_tensors(file, &config, packed)?;
        let mut optional: Vec<String> = packed.iter().map(|(key, _)| key.clone()).collect();
        if config.tie_word_embeddings {
            optional.push("lm_head.weight".to_string());
        }
        let options = LoadOptions { prefixes: Vec::new(), optional };
        let mut model = load_into(Self::build(&config, false, device), &tensors, &options).map_err(|e| match e {
            Error::MissingTensor { key, fix, .. } => Error::MissingTensor { key, file: path.clone(), fix },
            other => other,
        })?;
        set_packed(&mut model, packed, &path)?;
        if config.tie_word_embeddings {
            tie(&mut model.lm_head, &model.model.embed_tokens);
        }
        Ok(model)
    }
}

/// Puts each packed weight into the linear layer its key names.
fn set_packed(model: &mut LlamaForCausalLM, packed: Vec<(String, GgufPacked)>, path: &Path) -> Result<()> {
    if packed.is_empty() {
        return Ok(());
    }
    let mut by_module: HashMap<String, GgufPacked> =
        packed.into_iter().map(|(key, p)| (key.trim_end_matches(".weight").to_string(), p)).collect();
    let mut error = None;
    model.visit_sites_mut(&mut |path, site| {
        if let (SiteMut::Linear(layer), Some(p)) = (site, by_module.remove(path))
            && let Err(e) = layer.set_packed(PackedBase::new(p))
        {
            let e = match e {
                // In the file's `[d_output, d_input]` order, as the other loader errors.
                Error::ShapeMismatch { expected, actual, .. } => Error::ShapeMismatch {
                    path: path.to_string(),
                    tensor: format!("{path}.weight"),
                    expected: expected.into_iter().rev().collect(),
                    actual: actual.into_iter().rev().collect(),
                },
                other => other,
            };
            error.get_or_insert(e);
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    match by_module.keys().next() {
        Some(module) => Err(Error::Format {
            path: path.to_path_buf(),
            format: "GGUF",
            message: format!("tensor `{module}.weight` has no layer in the model its metadata describes (more blocks than `llama.block_count`?); the file is inconsistent"),
        }),
        None => Ok(()),
    }
}

/// The tensors of the file under their transformers keys, PyTorch layout, q/k un-permuted (a
/// tied head is tied after loading, sharing the table): deferred f32 reads (each tensor is
/// dequantized when the loader sets its parameter, so the f32 copies never all exist beside the
/// model), and with `packed`, the block-quantized projections read as packed blocks instead.
fn read_tensors(file: GgufFile, config: &LlamaConfig, packed: bool) -> Result<(LazyTensors, Vec<(String, GgufPacked)>)> {
    let file = Arc::new(file);
    let mut out = LazyTensors::new();
    let mut kept = Vec::new();
    let mut unknown = Vec::new();
    for info in &file.tensors {
        let Some(key) = gguf_tensor_key(&info.name) else {
            unknown.push(info.name.as_str());
            continue;
        };
        let permuted_heads = if key.ends_with("q_proj.weight") {
            Some(config.num_attention_heads)
        } else if key.ends_with("k_proj.weight") {
            Some(config.num_key_value_heads())
        } else {
            None
        };
        let is_projection = key.ends_with("_proj.weight") || key == "lm_head.weight";
        if packed && is_projection && info.ggml_type.is_block_quantized() {
            let mut blocks = GgufPacked::read(&file, &info.name)?;
            if let Some(heads) = permuted_heads {
                blocks = blocks.permute_rows(&unpermuted_order(info.shape[0], heads, &info.name, &file)?)?;
            }
            kept.push((key, blocks));
            continue;
        }
        let (source, name) = (Arc::clone(&file), info.name.clone());
        let read = move || {
            let data = source.read_tensor(&name)?;
            match permuted_heads {
                Some(heads) => unpermute_rows(data, heads, &name, &source),
                None => Ok(data),
            }
        };
        out.insert(key, StoredTensor::deferred(info.shape.clone(), read));
    }
    if !unknown.is_empty() {
        log::warn!("{}: ignored tensors a Llama model has no place for: {}", file.path().display(), unknown.join(", "));
    }
    Ok((out, kept))
}

/// For each transformers row of a q/k projection, the file row it comes from (see
/// [`unpermute_rows`]).
fn unpermuted_order(rows: usize, heads: usize, name: &str, file: &GgufFile) -> Result<Vec<usize>> {
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        let message = format!("`{name}` has {rows} rows, not a multiple of 2 × {heads} heads");
        return Err(Error::Format { path: file.path().into(), format: "GGUF", message });
    }
    let width = rows / heads;
    let half = width / 2;
    let mut order = vec![0; rows];
    for head in 0..heads {
        for j in 0..2 {
            for d in 0..half {
                order[head * width + j * half + d] = head * width + 2 * d + j;
            }
        }
    }
    Ok(order)
}

/// Undoes llama.cpp's q/k row order. Within each head of width `2h`, transformers' rotate-half
/// RoPE pairs row `d` with row `h + d`; the converter interleaves them so that the pair sits at
/// rows `2d, 2d + 1` (GGML's adjacent-pair RoPE). So transformers' row `j·h + d` is file row `2d + j`.
///
/// # Shapes
/// - `data`: `[heads · 2h, d_input]`, the same on output
fn unpermute_rows(data: TensorData, heads: usize, name: &str, file: &GgufFile) -> Result<TensorData> {
    let shape = data.shape().to_vec();
    let [rows, cols] = shape[..] else {
        return Err(Error::ShapeMismatch { path: name.into(), tensor: name.into(), expected: vec![0, 0], actual: shape });
    };
    let order = unpermuted_order(rows, heads, name, file)?;
    let v = data.try_into_vec::<f32>().map_err(|e| Error::Format { path: file.path().into(), format: "GGUF", message: format!("{e:?}") })?;
    let mut out = Vec::with_capacity(v.len());
    for from in order {
        out.extend_from_slice(&v[from * cols..(from + 1) * cols]);
    }
    Ok(TensorData::new(out, [rows, cols]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_gguf_tensor_keys() {
        assert_eq!(gguf_tensor_key("blk.12.attn_q.weight").as_deref(), Some("model.layers.12.self_attn.q_proj.weight"));
        assert_eq!(gguf_tensor_key("blk.0.ffn_norm.weight").as_deref(), Some("model.layers.0.post_attention_layernorm.weight"));
        assert_eq!(gguf_tensor_key("token_embd.weight").as_deref(), Some("model.embed_tokens.weight"));
        assert_eq!(gguf_tensor_key("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(gguf_tensor_key("rope_freqs.weight"), None);
        assert_eq!(gguf_tensor_key("blk.x.attn_q.weight"), None);
        // The table is a bijection onto distinct module paths.
        let mut hf: Vec<_> = LAYER_NAMES.iter().map(|(_, h)| h).chain(TOP_NAMES.iter().map(|(_, h)| h)).collect();
        hf.sort();
        hf.dedup();
        assert_eq!(hf.len(), LAYER_NAMES.len() + TOP_NAMES.len());
    }

    #[test]
    fn unpermute_moves_interleaved_pairs_to_halves() {
        let dir = tempfile::tempdir().expect("succeeds");
        let path = dir.path().join("x.gguf");
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend([0u8; 16]);
        std::fs::write(&path, bytes).expect("succeeds");
        let file = GgufFile::open(&path).expect("succeeds");
        // Two heads of width 4, one column: file rows (d, j) -> transformers rows (j, d).
        let data = TensorData::new((0..8).map(|x| x as f32).collect::<Vec<_>>(), [8, 1]);
        let out = unpermute_rows(data, 2, "q", &file).expect("succeeds");
        assert_eq!(out.try_into_vec::<f32>().expect("succeeds"), vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        let odd = TensorData::new(vec![0f32; 6], [6, 1]);
        assert!(matches!(unpermute_rows(odd, 2, "q", &file), Err(Error::Format { .. })));
    }
}
