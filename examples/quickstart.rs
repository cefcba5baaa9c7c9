//! Quickstart: LoRA on a Llama, the PEFT way.
//!
//! `cargo run --release -p peft-examples --example quickstart [MODEL_DIR]` (default: the tiny
//! Llama of `fixtures/models/llama`). It attaches LoRA to `q_proj`/`v_proj`, shows the trainable
//! share, teaches the model to count (next token = this token + 1), saves the adapter, loads it
//! back onto a fresh base, checks both give the same logits, merges it and checks again.

use anyhow::{Context, Result, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use peft::burn::module::Module;
use peft::burn::optim::{AdamWConfig, GradientsParams};
use peft::burn::tensor::{Int, Tensor, TensorData};
use peft::models::llama::LlamaForCausalLM;
use peft::{Labels, LoraConfig, ModelInputs, PeftModel, TaskType, get_peft_model};
use std::path::PathBuf;

fn main() -> Result<()> {
    let model_dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/llama")
    });
    let device = peft::device::default_device()?.autodiff();
    let base = LlamaForCausalLM::from_pretrained(&model_dir, &device)
        .with_context(|| format!("loading {}", model_dir.display()))?;

    let config = LoraConfig::new(8)
        .with_lora_alpha(16.0)
        .with_lora_dropout(0.05)
        .with_target_modules(["q_proj", "v_proj"])
        .with_task_type(TaskType::CausalLm);
    let mut model = get_peft_model(base, config)?;
    model.print_trainable_parameters();

    // Four rows counting upwards from different starts: 5 6 7 8 ..., 20 21 22 ..., ...
    let vocab = model.model().config().vocab_size;
    let rows: Vec<i64> = [5i64, 20, 33, 47].iter().flat_map(|s| (0..12).map(move |i| (s + i) % vocab as i64)).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(rows, [4, 12]), &device);

    let steps = 150;
    let bar = ProgressBar::new(steps).with_style(ProgressStyle::with_template("{bar:30} {pos}/{len} loss {msg}")?);
    let mut optim = AdamWConfig::new().init();
    let mut first_loss = None;
    let mut last_loss = 0.0;
    for _ in 0..steps {
        // The causal LM loss through every active adapter: position t predicts ids[t + 1].
        let inputs = ModelInputs::ids(ids.clone()).with_labels(Labels::Tokens(ids.clone()));
        let loss = model.forward(inputs)?.loss.context("labels give a loss")?;
        last_loss = loss.clone().into_scalar_f32()?;
        first_loss.get_or_insert(last_loss);
        bar.set_message(format!("{last_loss:.3}"));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
        bar.inc(1);
    }
    bar.finish();
    println!("loss {:.3} -> {last_loss:.3}", first_loss.unwrap_or(last_loss));

    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/quickstart-adapter");
    model.save_pretrained(&out)?;
    println!("saved the adapter to {}", out.display());

    let fresh = LlamaForCausalLM::from_pretrained(&model_dir, &device)?;
    let reloaded = PeftModel::from_pretrained(fresh, &out)?;
    let prompt = Tensor::<2, Int>::from_data(TensorData::new(vec![20i64, 21, 22, 23], [1, 4]), &device);
    // `valid()`: an inference copy, without autodiff and with dropout off.
    let trained = model.valid().logits(prompt.clone(), None)?.rank3()?;
    let loaded = reloaded.valid().logits(prompt.clone(), None)?.rank3()?;
    let diff = max_abs_diff(trained.clone(), loaded);
    ensure!(diff < 1e-4, "the reloaded adapter gives other logits (max diff {diff})");
    println!("reloaded adapter: same logits (max diff {diff:.1e})");

    let merged = reloaded.valid().merge_and_unload()?;
    let diff = max_abs_diff(trained, merged.forward(prompt.clone(), None));
    ensure!(diff < 1e-4, "the merged model gives other logits (max diff {diff})");
    println!("merged model: same logits (max diff {diff:.1e})");
    let continuation = merged.generate_greedy(prompt, 6, None);
    println!("20 21 22 23 -> {:?}", continuation.first().cloned().unwrap_or_default());
    Ok(())
}

fn max_abs_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
    (a - b).abs().max().into_scalar_f32().unwrap_or(f32::INFINITY)
}

/// Reading one float back from a tensor.
trait ScalarF32 {
    fn into_scalar_f32(self) -> Result<f32>;
}

impl<const D: usize> ScalarF32 for Tensor<D> {
    fn into_scalar_f32(self) -> Result<f32> {
        let values: Vec<f32> = self.into_data().convert::<f32>().try_into_vec().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        values.first().copied().context("an empty tensor")
    }
}
