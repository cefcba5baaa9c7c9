//! The Rust half of `cargo xtask interop`: adapters trained here, for the Python library to load.
//!
//! For each fixture case it attaches a fresh adapter with the case's config (random factors, as
//! `init_lora_weights = false`, except PiSSA and OLoRA, which start from the base weight; random IA3 vectors, as `init_ia3_weights = false`), takes two AdamW steps so the weights are really Rust-made, saves
//! the adapter with `save_pretrained`, and writes the inputs and this crate's outputs next to it:
//! `OUT/<case>/adapter/`, `OUT/<case>/outputs.safetensors`. `xtask/python/interop.py` then loads
//! each adapter with `PeftModel.from_pretrained` onto the same base and compares.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft::io::tensors::{read_safetensors, write_safetensors};
use peft::models::bert::{BertForSequenceClassification, RobertaForSequenceClassification};
use peft::models::bloom::BloomForCausalLM;
use peft::models::gpt2::Gpt2LMHeadModel;
use peft::models::llama::LlamaForCausalLM;
use peft::models::vit::ViTForImageClassification;
use peft::{AdapterSites, InitLoraWeights, Labels, ModelInputs, PeftConfig, PeftModel, get_peft_model};
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: interop_write OUT_DIR")?);
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let device = Device::flex().autodiff();
    let models = fixtures.join("models");

    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    write_case(&fixtures, &out, "bert_seq_cls", BertForSequenceClassification::from_pretrained(models.join("bert"), &device)?, |m, ids, mask| {
        m.forward_with_loss(ids, Some(mask), None, labels.clone())
    })?;
    write_case(&fixtures, &out, "roberta_seq_cls", RobertaForSequenceClassification::from_pretrained(models.join("roberta"), &device)?, |m, ids, mask| {
        m.forward_with_loss(ids, Some(mask), None, labels.clone())
    })?;
    for (case, model) in [("llama_qv", "llama"), ("llama_all_linear_rslora", "llama"), ("qwen2_bias_lora_only", "qwen2"), ("llama_embedding", "llama"), ("llama_dora", "llama"), ("llama_pissa", "llama"), ("llama_olora", "llama")] {
        let base = LlamaForCausalLM::from_pretrained(models.join(model), &device)?;
        write_case(&fixtures, &out, case, base, |m, ids, mask| {
            let labels = ids.clone().mask_fill(mask.clone().equal_elem(0), -100);
            m.forward_with_loss(ids, Some(mask), labels)
        })?;
    }
    let lm_labels = |ids: &Tensor<2, Int>, mask: &Tensor<2, Int>| ids.clone().mask_fill(mask.clone().equal_elem(0), -100);
    // GPT-2's Conv1D sites (fan_in_fan_out) and BLOOM's fused projection with trained biases.
    write_case(&fixtures, &out, "gpt2_lora", Gpt2LMHeadModel::from_pretrained(models.join("gpt2"), &device)?, |m, ids, mask| {
        let labels = lm_labels(&ids, &mask);
        m.forward_with_loss(ids, Some(mask), labels)
    })?;
    // DoRA's magnitudes on Conv1D sites.
    write_case(&fixtures, &out, "gpt2_dora", Gpt2LMHeadModel::from_pretrained(models.join("gpt2"), &device)?, |m, ids, mask| {
        let labels = lm_labels(&ids, &mask);
        m.forward_with_loss(ids, Some(mask), labels)
    })?;
    write_case(&fixtures, &out, "bloom_lora_only", BloomForCausalLM::from_pretrained(models.join("bloom"), &device)?, |m, ids, mask| {
        let labels = lm_labels(&ids, &mask);
        m.forward_with_loss(ids, Some(mask), labels)
    })?;
    // (IA)³: output and input scaling, GPT-2's Conv1D, a classifier copy.
    write_case(&fixtures, &out, "ia3_llama", LlamaForCausalLM::from_pretrained(models.join("llama"), &device)?, |m, ids, mask| {
        let labels = lm_labels(&ids, &mask);
        m.forward_with_loss(ids, Some(mask), labels)
    })?;
    write_case(&fixtures, &out, "ia3_gpt2", Gpt2LMHeadModel::from_pretrained(models.join("gpt2"), &device)?, |m, ids, mask| {
        let labels = lm_labels(&ids, &mask);
        m.forward_with_loss(ids, Some(mask), labels)
    })?;
    write_case(&fixtures, &out, "ia3_bert_seq_cls", BertForSequenceClassification::from_pretrained(models.join("bert"), &device)?, |m, ids, mask| {
        m.forward_with_loss(ids, Some(mask), None, labels.clone())
    })?;
    // LLaMA-Adapter: fresh prompts and zero gates, trained until the gates are open.
    for (case, model) in [("llama_adaption_prompt", "llama"), ("smollm_adaption_prompt", "smollm")] {
        let base = LlamaForCausalLM::from_pretrained(models.join(model), &device)?;
        write_adaption_prompt_case(&fixtures, &out, case, base, |m, ids, mask, labels| m.forward_with_loss(ids, Some(mask), labels))?;
    }
    let gpt2 = Gpt2LMHeadModel::from_pretrained(models.join("gpt2"), &device)?;
    write_adaption_prompt_case(&fixtures, &out, "gpt2_adaption_prompt", gpt2, |m, ids, mask, labels| m.forward_with_loss(ids, Some(mask), labels))?;
    // Prompt tuning, P-tuning (MLP and LSTM encoders) and prefix tuning (without and with the
    // projection), causal and seq2seq: trained here, then loaded by the Python library.
    for (case, projection) in [
        ("llama_prompt_tuning", false),
        ("llama_p_tuning", false),
        ("gpt2_p_tuning_lstm", false),
        ("llama_prefix_tuning", false),
        ("gpt2_prefix_tuning", true),
        ("t5_prompt_tuning", false),
        ("t5_prefix_tuning", false),
        ("bert_seq_cls_p_tuning", false),
    ] {
        write_prompt_case(&fixtures, &out, case, projection, &device)?;
    }
    write_adalora_case(&fixtures, &out, LlamaForCausalLM::from_pretrained(models.join("llama"), &device)?)?;
    // AdaLoRA on ViT's patch embedding convolution and q_proj/v_proj, on `pixel_values`.
    write_adalora_vit_case(&fixtures, &out, ViTForImageClassification::from_pretrained(models.join("vit"), &device)?)?;
    println!("wrote Rust adapters under {}", out.display());
    Ok(())
}

/// Attaches the case's config fresh, trains two steps, saves the adapter and the outputs.
fn write_case<M: AdapterSites, const D: usize>(
    fixtures: &Path,
    out: &Path,
    case: &str,
    base: M,
    forward: impl Fn(&M, Tensor<2, Int>, Tensor<2, Int>) -> (Tensor<D>, Tensor<1>),
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = fixtures.join("cases").join(case);
    let (ids, mask) = case_inputs(&dir, &base)?;

    // Fresh random weights (B non-zero, IA3 vectors away from one) so the outputs show them.
    let config: PeftConfig = match PeftConfig::from_dir(dir.join("adapter"))? {
        // PiSSA/OLoRA keep their start (from the base weight), which the Python library redoes on load.
        PeftConfig::Lora(c) => {
            let init = if c.init_lora_weights.decomposes_base() { c.init_lora_weights.clone() } else { InitLoraWeights::Random };
            c.with_inference_mode(false).with_init_lora_weights(init).into()
        }
        PeftConfig::Ia3(c) => c.with_inference_mode(false).with_init_ia3_weights(false).into(),
        other => return Err(format!("{case}: interop writes LoRA and IA3 adapters, not {}", other.method_name()).into()),
    };
    let mut model = get_peft_model(base, config)?;
    let mut optim = AdamWConfig::new().init();
    for _ in 0..2 {
        let (_, loss) = forward(model.model(), ids.clone(), mask.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let (output, _) = forward(&model.model().valid(), ids.clone(), mask.clone());
    save_case(out, &dir, case, &model, ids, mask, output.into_data())
}

/// AdaLoRA, trained here with the rank allocator so the saved folder has a `rank_pattern` and
/// factors cut to the kept ranks: the case `adalora_llama`'s config with init_r 4 pruned to an
/// average of 2 over 6 steps (tinit 1, tfinal 2), random A, E and B.
fn write_adalora_case(fixtures: &Path, out: &Path, base: LlamaForCausalLM) -> Result<(), Box<dyn std::error::Error>> {
    let case = "adalora_llama";
    let dir = fixtures.join("cases").join(case);
    let (ids, mask) = case_inputs(&dir, &base)?;
    let PeftConfig::AdaLora(config) = PeftConfig::from_dir(dir.join("adapter"))? else { return Err("an AdaLoRA case".into()) };
    let steps = 6;
    let config = config
        .with_total_step(steps)
        .with_tinit(1)
        .with_tfinal(2)
        .with_delta_t(1)
        .with_init_r(4)
        .with_target_r(2)
        .with_init_lora_weights(InitLoraWeights::Random);
    let mut config = config;
    config.common.inference_mode = false;
    let mut model = get_peft_model(base, config)?;
    let mut optim = AdamWConfig::new().init();
    for step in 0..steps {
        let labels = Labels::Tokens(ids.clone().mask_fill(mask.clone().equal_elem(0), -100));
        let loss = model.forward(ModelInputs::ids_with_mask(ids.clone(), mask.clone()).with_labels(labels))?.loss.ok_or("no loss")?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let kept = model.copy_adalora_gradients(&grads);
        model = optim.step(1e-2, model, grads);
        model.update_and_allocate(step, &kept)?;
    }
    let output = model.valid().logits(ids.clone().inner(), Some(mask.clone().inner()))?;
    save_case(out, &dir, case, &model, ids, mask, output.into_data())
}

/// AdaLoRA on a convolution: the case `adalora_vit`'s config (the patch embedding `projection`
/// and q_proj/v_proj) attached fresh with random factors, trained 6 steps with the rank allocator
/// (init_r 4 pruned to an average of 2), so the file holds a cut `[r', 3 * 8 * 8]` convolution
/// `lora_A` and a `rank_pattern`; the inputs are the case's `pixel_values`.
fn write_adalora_vit_case(fixtures: &Path, out: &Path, base: ViTForImageClassification) -> Result<(), Box<dyn std::error::Error>> {
    let case = "adalora_vit";
    let dir = fixtures.join("cases").join(case);
    let device = base.devices().into_iter().next().unwrap_or_else(Device::flex);
    let pixels = Tensor::<4>::from_data(read_safetensors(&dir.join("expected.safetensors"))?["pixel_values"].clone(), &device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
    let PeftConfig::AdaLora(config) = PeftConfig::from_dir(dir.join("adapter"))? else { return Err("an AdaLoRA case".into()) };
    let steps = 6;
    let mut config = config
        .with_total_step(steps)
        .with_tinit(1)
        .with_tfinal(2)
        .with_delta_t(1)
        .with_init_r(4)
        .with_target_r(2)
        .with_init_lora_weights(InitLoraWeights::Random);
    config.common.inference_mode = false;
    let mut model = get_peft_model(base, config)?;
    let mut optim = AdamWConfig::new().init();
    for step in 0..steps {
        let (_, loss) = model.model().forward_with_loss(pixels.clone(), labels.clone())?;
        let loss = match model.adalora_orth_reg() {
            Some(penalty) => loss + penalty,
            None => loss,
        };
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let kept = model.copy_adalora_gradients(&grads);
        model = optim.step(1e-2, model, grads);
        model.update_and_allocate(step, &kept)?;
    }
    let output = model.valid().model().forward(pixels.clone().inner())?;
    let target = out.join(case);
    model.save_pretrained(target.join("adapter"))?;
    write_safetensors(&target.join("outputs.safetensors"), vec![("pixel_values".into(), pixels.into_data()), ("adapted".into(), output.into_data())])?;
    std::fs::write(target.join("model.txt"), case_model(&dir)?)?;
    Ok(())
}

/// The case's `input_ids` and `attention_mask`, on `base`'s device.
fn case_inputs<M: AdapterSites>(dir: &Path, base: &M) -> Result<(Tensor<2, Int>, Tensor<2, Int>), Box<dyn std::error::Error>> {
    let expected = read_safetensors(&dir.join("expected.safetensors"))?;
    let device = base.devices().into_iter().next().unwrap_or_else(Device::flex);
    let ids = Tensor::<2, Int>::from_data(expected["input_ids"].clone(), &device);
    let mask = Tensor::<2, Int>::from_data(expected["attention_mask"].clone(), &device);
    Ok((ids, mask))
}

/// Writes `OUT/<case>/adapter/` (the trained adapter), `outputs.safetensors` (the inputs and
/// this crate's `adapted` outputs) and `model.txt` (the fixture model the case runs on).
fn save_case<M: AdapterSites>(
    out: &Path,
    dir: &Path,
    case: &str,
    model: &PeftModel<M>,
    ids: Tensor<2, Int>,
    mask: Tensor<2, Int>,
    adapted: TensorData,
) -> Result<(), Box<dyn std::error::Error>> {
    let target = out.join(case);
    model.save_pretrained(target.join("adapter"))?;
    write_safetensors(
        &target.join("outputs.safetensors"),
        vec![("input_ids".into(), ids.into_data()), ("attention_mask".into(), mask.into_data()), ("adapted".into(), adapted)],
    )?;
    std::fs::write(target.join("model.txt"), case_model(dir)?)?;
    Ok(())
}

/// The fixture model folder name of a case.
fn case_model(dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json"))?)?;
    Ok(meta["model"].as_str().unwrap_or_default().to_string())
}

/// A prompt-learning case: the case's config attached fresh (with `prefix_projection` when
/// `projection`), a few AdamW steps on the case's task loss, then the adapter, the inputs (with
/// the seq2seq labels) and this crate's logits (with `logits_mask`, the mask over the virtual
/// positions and the tokens) saved for the Python library to load.
fn write_prompt_case(fixtures: &Path, out: &Path, case: &str, projection: bool, device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    use peft::models::auto::AutoModel;
    let dir = fixtures.join("cases").join(case);
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json"))?)?;
    let task: peft::TaskType = serde_json::from_value(meta["task_type"].clone())?;
    let base = AutoModel::from_pretrained_for_task(fixtures.join(meta["model"].as_str().unwrap_or_default()), Some(task), device)?;
    let (ids, mask) = case_inputs(&dir, &base)?;
    let expected = read_safetensors(&dir.join("expected.safetensors"))?;
    // The training device is `device` (autodiff); the saved logits come from its inner device.
    let labels = |device: &Device| match task {
        peft::TaskType::Seq2SeqLm => Labels::Tokens(Tensor::from_data(expected["labels"].clone(), device)),
        peft::TaskType::SeqCls => Labels::Sequence(Tensor::from_data(TensorData::new(vec![0i64, 2], [2]), device)),
        _ => Labels::Tokens(ids.clone().to_device(device).mask_fill(mask.clone().to_device(device).equal_elem(0), -100)),
    };
    let mut config = PeftConfig::from_dir(dir.join("adapter"))?;
    config.set_inference_mode(false);
    if let PeftConfig::PrefixTuning(c) = &mut config {
        c.prefix_projection = projection;
    }
    let mut model = get_peft_model(base, config)?;
    let inputs = |device: &Device| {
        let inputs = ModelInputs::ids_with_mask(ids.clone().to_device(device), mask.clone().to_device(device));
        inputs.with_labels(labels(device))
    };
    let mut optim = AdamWConfig::new().init();
    for _ in 0..4 {
        let loss = model.forward(inputs(device))?.loss.ok_or("labels give a loss")?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(5e-2, model, grads);
    }
    let trained = model.valid();
    let plain = device.clone().inner();
    let logits = trained.forward(inputs(&plain))?.logits.into_data();
    let target = out.join(case);
    trained.save_pretrained(target.join("adapter"))?;
    let virtual_positions = logits.shape().get(1).copied().unwrap_or(0).saturating_sub(ids.dims()[1]);
    let [batch, _] = ids.dims();
    let logits_mask = Tensor::cat(vec![Tensor::<2, Int>::ones([batch, virtual_positions], &plain), mask.clone().to_device(&plain)], 1);
    let mut tensors = vec![
        ("input_ids".to_string(), ids.into_data()),
        ("attention_mask".to_string(), mask.into_data()),
        ("logits_mask".to_string(), logits_mask.into_data()),
        ("adapted".to_string(), logits),
    ];
    if task == peft::TaskType::Seq2SeqLm {
        tensors.push(("labels".to_string(), expected["labels"].clone()));
    }
    write_safetensors(&target.join("outputs.safetensors"), tensors)?;
    std::fs::write(target.join("model.txt"), case_model(&dir)?)?;
    Ok(())
}

/// A LLaMA-Adapter case: the case's config attached fresh (the gates start at zero), four AdamW
/// steps of the causal LM loss so the gates open, then the adapter and the outputs as above.
/// A causal LM's `(logits, loss)` on `(ids, mask, labels)`.
type LmLoss<M> = fn(&M, Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Int>) -> (Tensor<3>, Tensor<1>);

fn write_adaption_prompt_case<M: AdapterSites>(fixtures: &Path, out: &Path, case: &str, base: M, forward: LmLoss<M>) -> Result<(), Box<dyn std::error::Error>> {
    let dir = fixtures.join("cases").join(case);
    let (ids, mask) = case_inputs(&dir, &base)?;
    let labels = ids.clone().mask_fill(mask.clone().equal_elem(0), -100);
    let mut config = PeftConfig::from_dir(dir.join("adapter"))?;
    config.set_inference_mode(false);
    let mut model = get_peft_model(base, config)?;
    let mut optim = AdamWConfig::new().init();
    for _ in 0..4 {
        let (_, loss) = forward(model.model(), ids.clone(), mask.clone(), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(5e-2, model, grads);
    }
    let (output, _) = forward(&model.model().valid(), ids.clone().inner(), mask.clone().inner(), labels.inner());
    save_case(out, &dir, case, &model, ids, mask, output.into_data())
}
