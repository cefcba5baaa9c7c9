//! Where a peft LoRA training step spends the time it adds over the frozen base.
//!
//! `cargo run --release -p peft-bench --example step_breakdown [-- --quick]`
//!
//! On the benchmark's model and batch, interleaved round by round (so that other load on the
//! machine hits every part alike), the median of per-round ratios to the frozen base of:
//! - `peft fwd+bwd`: forward and backward with the adapters, no gradient collection, no optimizer;
//! - `peft +grads`: the same plus `GradientsParams::from_grads`;
//! - `peft step`: the whole step with the AdamW update;
//! - `peft dropout 0.05`: the whole step with `lora_dropout = 0.05`.

use anyhow::{Context, Result};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::Module;
use burn::tensor::{Device, Distribution, Int, Tensor};
use peft::get_peft_model;
use peft::models::layers::causal_lm_loss;
use peft_bench::llama::LlamaForCausalLM;
use peft_bench::workload::Workload;
use std::time::Instant;

fn main() -> Result<()> {
    peft_bench::use_threads()?;
    let quick = std::env::args().any(|a| a == "--quick");
    let w = if quick { Workload::quick() } else { Workload::full() };
    let device = Device::flex().autodiff();
    let base = LlamaForCausalLM::new(&w.llama_config(), &device);
    let ids = Tensor::<2, Int>::random([w.batch, w.seq], Distribution::Uniform(0.0, w.vocab_size as f64), &device);
    let frozen = base.clone().no_grad();
    let mut peft = get_peft_model(base.clone(), w.lora_config()).context("attach")?;
    let mut dropout = get_peft_model(base, w.lora_config().with_lora_dropout(0.05)).context("attach")?;
    let mut optim = AdamWConfig::new().init();
    let mut optim_dropout = AdamWConfig::new().init();

    let names = ["frozen fwd+bwd", "peft fwd+bwd", "peft +grads", "peft step", "peft dropout 0.05 step"];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let rounds = w.warmup + 2 * w.steps;
    for round in 0..rounds {
        let mut lap = [0.0f64; 5];
        let clock = Instant::now();
        let embeds = frozen.model.embed(ids.clone()).detach().require_grad();
        let loss = causal_lm_loss(frozen.forward_embeds(embeds, None, None), ids.clone());
        let _ = loss.clone().into_scalar::<f32>();
        drop(loss.backward());
        lap[0] = clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        let (_, loss) = peft.model().forward_with_loss(ids.clone(), None, ids.clone());
        let _ = loss.clone().into_scalar::<f32>();
        drop(loss.backward());
        lap[1] = clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        let (_, loss) = peft.model().forward_with_loss(ids.clone(), None, ids.clone());
        let _ = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &peft);
        lap[2] = clock.elapsed().as_secs_f64();
        drop(grads);

        let clock = Instant::now();
        let (_, loss) = peft.model().forward_with_loss(ids.clone(), None, ids.clone());
        let _ = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &peft);
        peft = optim.step(1e-4, peft, grads);
        lap[3] = clock.elapsed().as_secs_f64();

        let clock = Instant::now();
        let (_, loss) = dropout.model().forward_with_loss(ids.clone(), None, ids.clone());
        let _ = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &dropout);
        dropout = optim_dropout.step(1e-4, dropout, grads);
        lap[4] = clock.elapsed().as_secs_f64();

        if round >= w.warmup {
            for (t, l) in times.iter_mut().zip(lap) {
                t.push(l * 1e3);
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("{:<24} {:>10} {:>16}", "part", "median ms", "x frozen (paired)");
    for (name, t) in names.iter().zip(&times) {
        let ratios: Vec<f64> = t.iter().zip(&times[0]).map(|(a, b)| a / b).collect();
        println!("{name:<24} {:>10.1} {:>16.3}", median(t.clone()), median(ratios));
    }
    Ok(())
}
