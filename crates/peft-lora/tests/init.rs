//! LoRA factors start as the Python library starts them.

use burn::tensor::Tensor;
use peft_core::{AdaptedLinear, AdapterSites, InitLoraWeights, LoraConfig, SiteMut};
use peft_lora::{LoraLinear, inject};

#[derive(burn::module::Module, Debug)]
struct One {
    proj: AdaptedLinear,
}

impl AdapterSites for One {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f("proj", SiteMut::Linear(&mut self.proj));
    }
}

fn factors(init: InitLoraWeights, r: usize) -> (Vec<f32>, Vec<f32>) {
    let device = peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in");
    let mut model = One { proj: AdaptedLinear::new(256, 64, false, &device) };
    let config = LoraConfig::new(r).with_target_modules(["proj"]).with_init_lora_weights(init);
    inject(&mut model, &config, "default", None).expect("attaches");
    let adapter = model.proj.adapters.get("default").expect("adapter");
    let lora = adapter.as_any().downcast_ref::<LoraLinear>().expect("a LoRA adapter");
    let values = |t: Tensor<2>| t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
    (values(lora.lora_a.val()), values(lora.lora_b.val()))
}

fn std_dev(v: &[f32]) -> f32 {
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
}

#[test]
fn default_is_kaiming_uniform_a_and_zero_b() {
    let (a, b) = factors(InitLoraWeights::Default, 8);
    let bound = 1.0 / 256f32.sqrt();
    assert!(a.iter().all(|x| x.abs() <= bound), "A in U(-1/sqrt(in), 1/sqrt(in))");
    // A uniform on [-k, k] has standard deviation k / sqrt(3).
    assert!((std_dev(&a) - bound / 3f32.sqrt()).abs() < 0.1 * bound);
    assert!(b.iter().all(|x| *x == 0.0), "B starts at zero: the adapter is the identity");
}

#[test]
fn gaussian_has_std_one_over_r() {
    let (a, b) = factors(InitLoraWeights::Gaussian, 4);
    assert!((std_dev(&a) - 0.25).abs() < 0.02, "std {}", std_dev(&a));
    assert!(b.iter().all(|x| *x == 0.0));
}

#[test]
fn false_makes_both_factors_random() {
    let (_, b) = factors(InitLoraWeights::Random, 8);
    assert!(b.iter().any(|x| *x != 0.0));
    assert!(b.iter().all(|x| x.abs() <= 1.0 / 8f32.sqrt()));
}
