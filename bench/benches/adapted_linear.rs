//! One linear layer, forward and backward, where a training step spends its time: the frozen base
//! alone, peft's LoRA (with and without dropout) and Burn's `apply_lora`.
//!
//! `cargo bench -p peft-bench --bench adapted_linear`. The input requires grad, as inside a model,
//! so every variant pays the activation gradient; the clock stops after the gradients are read.

use burn::module::{Lora, Module, ParamGroup};
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use peft::core::{AdaptedLinear, AdapterSites, SiteMut};
use peft::{LoraConfig, get_peft_model};
use std::time::{Duration, Instant};

/// `[batch, seq, d_in] -> d_out`: an MLP up-projection of the full-size step workload.
const SHAPE: [usize; 4] = [8, 64, 512, 1408];
const RANK: usize = 16;

/// One adapted linear layer as a model with one adapter site.
#[derive(Module, Debug)]
struct OneLayer {
    proj: AdaptedLinear,
}

impl AdapterSites for OneLayer {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f("proj", SiteMut::Linear(&mut self.proj));
    }
}

fn timed(iters: u64, mut f: impl FnMut() -> f32) -> Duration {
    let start = Instant::now();
    let mut sink = 0.0;
    for _ in 0..iters {
        sink += f();
    }
    let elapsed = start.elapsed();
    std::hint::black_box(sink);
    elapsed
}

fn adapted_linear(c: &mut Criterion) {
    if let Err(e) = peft_bench::use_threads() {
        eprintln!("{e}");
    }
    let device = Device::flex().autodiff();
    let [batch, seq, d_in, d_out] = SHAPE;
    let x = Tensor::<3>::random([batch, seq, d_in], Distribution::Normal(0.0, 1.0), &device);
    let base = OneLayer { proj: AdaptedLinear::new(d_in, d_out, false, &device) }.no_grad();
    let lora = |dropout: f64| {
        let config = LoraConfig::new(RANK).with_lora_alpha(32.0).with_lora_dropout(dropout).with_target_modules(["proj"]);
        match get_peft_model(base.clone(), config) {
            Ok(model) => model,
            Err(e) => panic!("cannot attach LoRA: {e}"),
        }
    };
    let peft = lora(0.0);
    let peft_dropout = lora(0.05);
    let group = ParamGroup::from_regex(r"base_layer\.weight$").unwrap_or_else(|e| panic!("{e:?}"));
    let applied = base.clone().apply_lora(Lora::new(RANK, 32.0).set_param_group(group));

    // Forward, backward to `x` (and the adapter), then read one gradient element to wait for it.
    let run = |forward: &dyn Fn(Tensor<3>) -> Tensor<3>| {
        let x = x.clone().detach().require_grad();
        let grads = forward(x.clone()).mean().backward();
        x.grad(&grads).map_or(0.0, |g| g.slice([0..1, 0..1, 0..1]).into_scalar::<f32>())
    };

    let mut group = c.benchmark_group("adapted_linear_8x64x512_to_1408");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.bench_function("frozen_base", |bench| bench.iter_custom(|n| timed(n, || run(&|x| base.proj.forward(x)))));
    group.bench_function("peft_lora", |bench| {
        bench.iter_custom(|n| timed(n, || run(&|x| peft.model().proj.forward(x))))
    });
    group.bench_function("peft_lora_dropout_0.05", |bench| {
        bench.iter_custom(|n| timed(n, || run(&|x| peft_dropout.model().proj.forward(x))))
    });
    group.bench_function("burn_apply_lora", |bench| {
        bench.iter_custom(|n| timed(n, || run(&|x| applied.proj.forward(x))))
    });
    group.finish();
}

criterion_group!(benches, adapted_linear);
criterion_main!(benches);
