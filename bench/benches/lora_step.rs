//! One training step on the small (`--quick`) Llama, three ways: the frozen base, peft's LoRA and
//! Burn's `apply_lora`, all in the same run so they compare against each other.
//!
//! `cargo bench -p peft-bench`. Each sample times whole steps with `iter_custom`; a step reads its
//! loss back and syncs the device before the clock stops, so the queue is never what is measured.

use burn::tensor::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use peft_bench::workload::{Trainer, Variant, Workload};
use std::time::{Duration, Instant};

fn lora_step(c: &mut Criterion) {
    // Fails only if something sized the pool first; the step then runs on the default pool.
    if let Err(e) = peft_bench::use_threads() {
        eprintln!("{e}");
    }
    let device = Device::flex().autodiff();
    let workload = Workload::quick();
    let mut group = c.benchmark_group("lora_step");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for variant in Variant::ALL {
        let mut trainer = match Trainer::new(variant, &workload, &device) {
            Ok(trainer) => trainer,
            Err(e) => panic!("cannot set up {}: {e:#}", variant.name()),
        };
        group.bench_function(variant.name(), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    if let Err(e) = trainer.step() {
                        panic!("{} step failed: {e:#}", variant.name());
                    }
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lora_step);
criterion_main!(benches);
