//! Where a `peft demo` training step spends its time: LoRA r 8 on MiniLM-L6 `query`/`value`, a
//! fresh 3-way classifier, batch 16, AdamW.
//!
//! `cargo run --release -p peft-bench --example bert_step -- MODEL_DIR [ROUNDS]`
//!
//! `bench/bert_step.py MODEL_DIR` times the same step with torch and Hugging Face PEFT (2 threads);
//! run the two back to back. The batch is synthetic and identical on both sides: ids
//! `1000 + (7 i + 13 t) mod 20000`, row `i` has `20 + 7 i mod 29` real tokens, padded to 48.
//!
//! Prints the median over rounds, in ms, of: forward to the loss, backward, gradient collection,
//! the AdamW update, and the whole step, with the demo's dropout (0.1 everywhere) and with all
//! dropout off; then one encoder layer's attention and feed-forward blocks (forward + backward)
//! and a dropout mask on a `[16, 48, 384]` activation.

use anyhow::{Context, Result};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use peft::models::bert::{BertConfig, BertForSequenceClassification, cross_entropy};
use peft::{LoraConfig, PeftModel, TaskType, get_peft_model};
use std::time::Instant;

const BATCH: usize = 16;
const SEQ: usize = 48;

fn batch(device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<1, Int>) {
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for i in 0..BATCH {
        let len = 20 + (7 * i) % 29;
        for t in 0..SEQ {
            let real = t < len;
            ids.push(if real { 1000 + ((7 * i + 13 * t) % 20000) as i64 } else { 0 });
            mask.push(i64::from(real));
        }
    }
    let labels: Vec<i64> = (0..BATCH).map(|i| (i % 3) as i64).collect();
    (
        Tensor::from_data(TensorData::new(ids, [BATCH, SEQ]), device),
        Tensor::from_data(TensorData::new(mask, [BATCH, SEQ]), device),
        Tensor::from_data(TensorData::new(labels, [BATCH]), device),
    )
}

fn model(dir: &str, dropout: f64, device: &Device) -> Result<PeftModel<BertForSequenceClassification>> {
    let mut config = BertConfig::from_file(dir)?;
    config.num_labels = 3;
    config.hidden_dropout_prob = dropout;
    config.attention_probs_dropout_prob = dropout;
    let base = BertForSequenceClassification::from_pretrained_with_config(dir, config, device, true)?;
    let lora = LoraConfig::new(8)
        .with_lora_alpha(16.0)
        .with_lora_dropout(dropout)
        .with_target_modules(["query", "value"])
        .with_task_type(TaskType::SeqCls);
    Ok(get_peft_model(base, lora)?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `rounds` training steps, part by part: `[forward, backward, grads, optimizer, step]` medians.
fn steps(mut m: PeftModel<BertForSequenceClassification>, rounds: usize, device: &Device) -> [f64; 5] {
    let (ids, mask, labels) = batch(device);
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
    let mut laps: [Vec<f64>; 5] = Default::default();
    for round in 0..rounds + 1 {
        let t0 = Instant::now();
        let loss = cross_entropy(m.model().forward(ids.clone(), Some(mask.clone()), None), labels.clone());
        let _ = loss.clone().into_scalar::<f32>();
        let t1 = Instant::now();
        let raw = loss.backward();
        let t2 = Instant::now();
        let grads = GradientsParams::from_grads(raw, &m);
        let t3 = Instant::now();
        m = optim.step(2e-3, m, grads);
        let t4 = Instant::now();
        if round > 0 {
            for (lap, (a, b)) in laps.iter_mut().zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t0, t4)]) {
                lap.push((b - a).as_secs_f64() * 1e3);
            }
        }
    }
    laps.map(median)
}

/// One layer's attention block and feed-forward block, forward + backward, `[attention, ffn]` medians.
fn blocks(m: &PeftModel<BertForSequenceClassification>, rounds: usize, device: &Device) -> [f64; 2] {
    let layer = &m.model().bert.encoder.layer[0];
    let x = Tensor::<3>::random([BATCH, SEQ, 384], Distribution::Normal(0.0, 1.0), device).require_grad();
    let (_, mask, _) = batch(device);
    let mask = mask.float().neg().add_scalar(1.0).mul_scalar(-1e4).reshape([BATCH, 1, 1, SEQ]);
    let mut att = Vec::new();
    let mut ffn = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        drop(layer.attention.forward(x.clone(), Some(mask.clone()), None).sum().backward());
        att.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        drop(layer.output.forward(layer.intermediate.forward(x.clone()), x.clone()).sum().backward());
        ffn.push(t.elapsed().as_secs_f64() * 1e3);
    }
    [median(att), median(ffn)]
}

fn main() -> Result<()> {
    peft_bench::use_threads()?;
    let mut args = std::env::args().skip(1);
    let dir = args.next().context("usage: bert_step MODEL_DIR [ROUNDS]")?;
    let rounds: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(8);
    let device = Device::flex().autodiff();
    println!("{:<22} {:>8} {:>8} {:>8} {:>8} {:>8}", "ms (median)", "forward", "backward", "grads", "adamw", "step");
    for (name, p) in [("dropout 0.1", 0.1), ("dropout 0", 0.0)] {
        let m = model(&dir, p, &device)?;
        let [att, ffn] = blocks(&m, rounds, &device);
        let s = steps(m, rounds, &device);
        println!("{name:<22} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}", s[0], s[1], s[2], s[3], s[4]);
        println!("  layer 0 fwd+bwd: attention {att:.1}, feed-forward {ffn:.1}");
    }
    let x = Tensor::<3>::random([BATCH, SEQ, 384], Distribution::Normal(0.0, 1.0), &device);
    let mut mask = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let _ = x.random_like(Distribution::Bernoulli(0.9)).into_data();
        mask.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("one Bernoulli mask [16, 48, 384]: {:.2} ms", median(mask));
    Ok(())
}
