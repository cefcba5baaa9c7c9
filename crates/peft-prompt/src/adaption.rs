//! LLaMA-Adapter (the Python library's "adaption prompt"): learned prompts attended to by the top
//! layers' queries through a zero-initialised gate.

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Distribution, FloatDType, Tensor, TensorData};
use peft_core::attach::{AdapterTensors, SiteAdapter, SiteInfo, SiteMethod, file_tensor};
use peft_core::targets::closest_names;
use peft_core::{AdaptionPromptConfig, AttentionAdapter, AttentionInputs, AttentionProjections, Error, Result, SiteKind, SiteMut};

/// The key suffix of a layer's prompt in `adapter_model.safetensors`.
pub const ADAPTION_PROMPT: &str = "adaption_prompt";
/// The key suffix of a layer's gate in `adapter_model.safetensors`.
pub const ADAPTION_GATE: &str = "adaption_gate";

/// One layer's adaption prompt and gate: a second, gated attention of the layer's queries over
/// `adapter_len` learned prompt tokens, added to the self-attention module's output.
///
/// With `P` the prompt, `q` the layer's rotated queries and `g` the gate:
///
/// ```text
/// K = k_proj(P), V = v_proj(P)                       (no rotary embedding on the prompt's keys)
/// out = attention(x) + o_proj( g · softmax(q Kᵀ / sqrt(head_dim)) V )
/// ```
///
/// On GPT-2 (one fused `c_attn`), `K` and `V` are the key and value blocks of `c_attn(P)`, and
/// the gated attention is added without `c_proj`, as the Python library does.
///
/// The softmax runs over the prompt tokens alone and sees no attention mask (every query, padding
/// included, attends to the whole prompt), as in the Python library; with grouped-query attention
/// each key/value head of the prompt serves its group of query heads. The gate starts at zero, so
/// a fresh adapter leaves the model's output unchanged.
///
/// # Shapes
/// - `adaption_prompt`: `[1, adapter_len, hidden_size]`
/// - `adaption_gate`: `[1]`
#[derive(Module, Debug)]
pub struct AdaptionPrompt {
    /// The learned prompt tokens, in the hidden space of the layer's input.
    pub adaption_prompt: Param<Tensor<3>>,
    /// The gate on the prompt's attention output (zero at the start).
    pub adaption_gate: Param<Tensor<1>>,
}

impl AdaptionPrompt {
    /// A fresh adapter as the Python library initialises one: the prompt ~ N(0, 1), the gate 0.
    pub fn new(adapter_len: usize, hidden_size: usize, device: &Device) -> Self {
        let prompt = Tensor::random([1, adapter_len, hidden_size], Distribution::Normal(0.0, 1.0), device);
        AdaptionPrompt { adaption_prompt: Param::from_tensor(prompt), adaption_gate: Param::from_tensor(Tensor::zeros([1], device)) }
    }

    /// An adapter with the given tensors (a saved adapter's).
    ///
    /// # Shapes
    /// - `prompt`: `[1, adapter_len, hidden_size]`
    /// - `gate`: `[1]`
    pub fn from_tensors(prompt: Tensor<3>, gate: Tensor<1>) -> Self {
        AdaptionPrompt { adaption_prompt: Param::from_tensor(prompt), adaption_gate: Param::from_tensor(gate) }
    }

    /// The gated attention output over the prompt, before it is added to the layer's output.
    ///
    /// # Shapes
    /// - `inputs.query`: `[batch, num_heads, len, head_dim]`
    /// - output: `[batch, len, hidden_size]`
    pub fn prompt_attention(&self, inputs: &AttentionInputs<'_>) -> Tensor<3> {
        let [batch, heads, len, d] = inputs.query.dims();
        let kv = inputs.num_key_value_heads;
        let group = heads / kv;
        let prompt = self.adaption_prompt.val();
        let tokens = prompt.dims()[1];
        // [1, kv, adapter_len, head_dim], repeated over the batch (batched matmul wants equal batches).
        let per_head = |t: Tensor<3>| t.reshape([1, tokens, kv, d]).swap_dims(1, 2).expand([batch, kv, tokens, d]);
        let (keys, values) = match inputs.projections {
            AttentionProjections::Separate { k_proj, v_proj, .. } => (k_proj.forward(prompt.clone()), v_proj.forward(prompt)),
            AttentionProjections::Fused { c_attn } => {
                // `[q | k | v]`: the prompt's own queries are not used.
                let qkv = c_attn.forward(prompt);
                let width = qkv.dims()[2] / 3;
                (qkv.clone().narrow(2, width, width), qkv.narrow(2, 2 * width, width))
            }
        };
        let (keys, values) = (per_head(keys), per_head(values));
        // Query head `h` reads key/value head `h / group` (Python's repeat_interleave): grouping the
        // query heads of one key/value head along the token axis gives one product for all.
        let query = inputs.query.clone().reshape([batch, kv, group * len, d]);
        let scores = query.matmul(keys.swap_dims(2, 3)).mul_scalar((d as f64).powf(-0.5));
        let gate = self.adaption_gate.val().reshape([1, 1, 1, 1]);
        // The softmax in fp32 whatever the model's float type, as the Python library upcasts it.
        let dtype = scores.dtype();
        let probs = softmax(scores.cast(FloatDType::F32), 3).cast(dtype) * gate;
        let out = probs.matmul(values).reshape([batch, heads, len, d]).swap_dims(1, 2).reshape([batch, len, heads * d]);
        match inputs.projections {
            AttentionProjections::Separate { o_proj, .. } => o_proj.forward(out),
            // GPT-2's output projection already ran on the layer's output; the Python library adds
            // the prompt's attention without one.
            AttentionProjections::Fused { .. } => out,
        }
    }
}

impl AttentionAdapter for AdaptionPrompt {
    fn adapt_output(&self, inputs: &AttentionInputs<'_>, output: Tensor<3>) -> Tensor<3> {
        output + self.prompt_attention(inputs)
    }

    fn export(&self) -> Vec<(String, TensorData)> {
        vec![
            (ADAPTION_PROMPT.into(), self.adaption_prompt.val().into_data()),
            (ADAPTION_GATE.into(), self.adaption_gate.val().into_data()),
        ]
    }
}

/// LLaMA-Adapter as a method of the attach pipeline: an [`AdaptionPrompt`] in each of the top
/// `adapter_layers` self-attention modules named `target_modules`.
///
/// Built from the model's sites ([`peft_core::AdapterSites::site_paths`]) because "the top
/// layers" needs the count of them; the facade does this for `get_peft_model` and
/// `PeftModel::from_pretrained`.
#[derive(Clone, Debug)]
pub struct AdaptionPromptMethod {
    /// The selected module paths, in model order.
    selected: Vec<String>,
    adapter_len: usize,
    hidden_size: usize,
    device: Device,
}

impl AdaptionPromptMethod {
    /// The method for `config` on a model with these sites, whose prompts are `hidden_size` wide
    /// (the model's hidden size, `None` when the model does not give it) and live on `device`.
    ///
    /// As the Python library does, the modules are the attention modules whose path ends in
    /// `.<target_modules>`, in model order, and the last `adapter_layers` of them get a prompt.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an invalid config or more `adapter_layers` than the model
    /// has; [`Error::Unsupported`] for a model without self-attention hook sites (BERT, T5 and
    /// the other families whose attention has no adapter hook yet);
    /// [`Error::TargetModulesNotFound`] when no attention module has the `target_modules` name;
    /// [`Error::Unsupported`] when `hidden_size` is `None`.
    pub fn new(config: &AdaptionPromptConfig, sites: &[(String, SiteKind)], hidden_size: Option<usize>, device: &Device) -> Result<Self> {
        config.validate()?;
        let (Some(adapter_len), Some(adapter_layers)) = (config.adapter_len, config.adapter_layers) else {
            return Err(Error::InvalidState("a validated adaption-prompt config without sizes".into()));
        };
        let attention: Vec<&str> = sites.iter().filter(|(_, k)| *k == SiteKind::Attention).map(|(p, _)| p.as_str()).collect();
        if attention.is_empty() {
            return Err(no_attention_hooks());
        }
        let target = match config.target_modules.as_deref() {
            Some(t) => t.to_string(),
            None => default_target(sites).ok_or_else(no_attention_hooks)?,
        };
        let matching: Vec<String> = attention.iter().filter(|p| names_module(p, &target)).map(|p| p.to_string()).collect();
        if matching.is_empty() {
            return Err(Error::TargetModulesNotFound { targets: target.clone(), closest: closest_names(&[target], attention.iter().copied(), 8) });
        }
        if adapter_layers > matching.len() {
            return Err(Error::config(
                "adapter_layers",
                adapter_layers,
                format!("the model has {} `{target}` modules; ask for at most that many", matching.len()),
            ));
        }
        let selected = matching[matching.len() - adapter_layers..].to_vec();
        let hidden_size = hidden_size.ok_or_else(|| Error::Unsupported {
            what: "LLaMA-Adapter on a model that does not give its hidden size (`AdapterSites::model_dims`)".into(),
            supported: "the Llama family's causal LMs".into(),
        })?;
        Ok(AdaptionPromptMethod { selected, adapter_len, hidden_size, device: device.clone() })
    }

    /// The module paths that get a prompt, in model order.
    pub fn selected(&self) -> &[String] {
        &self.selected
    }
}

/// Whether the module at `path` is named `name` (the whole path or its last segments).
fn names_module(path: &str, name: &str) -> bool {
    path == name || path.strip_suffix(name).is_some_and(|rest| rest.ends_with('.'))
}

/// The attention modules' name in this model (`self_attn` for Llama): the last segment of the
/// first attention site's path; `None` without attention sites.
pub fn default_target(sites: &[(String, SiteKind)]) -> Option<String> {
    let (path, _) = sites.iter().find(|(_, k)| *k == SiteKind::Attention)?;
    Some(path.rsplit('.').next().unwrap_or(path).to_string())
}

fn no_attention_hooks() -> Error {
    Error::Unsupported {
        what: "LLaMA-Adapter (ADAPTION_PROMPT) on a model without self-attention hook sites (`SiteKind::Attention`)".into(),
        supported: "models whose self-attention exposes an adapter hook: the Llama family (llama, mistral, qwen2, SmolLM) and GPT-2".into(),
    }
}

impl SiteMethod for AdaptionPromptMethod {
    fn selects(&self, site: &SiteInfo<'_>) -> bool {
        site.kind == SiteKind::Attention && self.selected.iter().any(|p| p == site.path)
    }

    fn build(&self, path: &str, site: SiteMut<'_>, tensors: Option<&AdapterTensors>) -> Result<(SiteAdapter, Vec<String>)> {
        let SiteMut::Attention(_) = site else {
            return Err(Error::InvalidState(format!("`{path}` is not a self-attention module")));
        };
        let (len, hidden) = (self.adapter_len, self.hidden_size);
        let Some(tensors) = tensors else {
            return Ok((SiteAdapter::attention(AdaptionPrompt::new(len, hidden, &self.device)), Vec::new()));
        };
        let fix = "the folder's adapter_model.safetensors lacks this layer's prompt: check adapter_layers in adapter_config.json";
        let (prompt, prompt_key) = file_tensor(tensors, path, ADAPTION_PROMPT, &[1, len, hidden], fix)?;
        let (gate, gate_key) = file_tensor(tensors, path, ADAPTION_GATE, &[1], fix)?;
        let adapter = AdaptionPrompt::from_tensors(
            Tensor::from_data(prompt.convert::<f32>(), &self.device),
            Tensor::from_data(gate.convert::<f32>(), &self.device),
        );
        Ok((SiteAdapter::attention(adapter), vec![prompt_key, gate_key]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites() -> Vec<(String, SiteKind)> {
        let mut out = Vec::new();
        for layer in 0..3 {
            out.push((format!("model.layers.{layer}.self_attn.q_proj"), SiteKind::Linear));
            out.push((format!("model.layers.{layer}.self_attn"), SiteKind::Attention));
        }
        out
    }

    #[test]
    fn the_top_layers_are_selected() {
        let device = Device::default();
        let method = AdaptionPromptMethod::new(&AdaptionPromptConfig::new(4, 2), &sites(), Some(8), &device).expect("valid");
        assert_eq!(method.selected(), ["model.layers.1.self_attn", "model.layers.2.self_attn"]);
        assert_eq!(default_target(&sites()).as_deref(), Some("self_attn"));
    }

    #[test]
    fn mistakes_are_named() {
        let device = Device::default();
        let e = AdaptionPromptMethod::new(&AdaptionPromptConfig::new(4, 4), &sites(), Some(8), &device).expect_err("too many layers");
        assert!(matches!(e, Error::InvalidConfig { field: "adapter_layers", .. }), "{e:?}");
        let e = AdaptionPromptMethod::new(&AdaptionPromptConfig::new(4, 1).with_target_modules("attn"), &sites(), Some(8), &device).expect_err("no such name");
        assert!(matches!(e, Error::TargetModulesNotFound { .. }), "{e:?}");
        let linear_only: Vec<_> = sites().into_iter().filter(|(_, k)| *k == SiteKind::Linear).collect();
        let e = AdaptionPromptMethod::new(&AdaptionPromptConfig::new(4, 1), &linear_only, Some(8), &device).expect_err("no hooks");
        assert!(matches!(e, Error::Unsupported { .. }) && e.to_string().contains("self-attention hook"), "{e}");
    }
}
