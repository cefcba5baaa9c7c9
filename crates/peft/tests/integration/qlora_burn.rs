//! QLoRA on a model loaded from safetensors: `quantize_base_weights` keeps every linear base
//! weight in Burn's 8- or 4-bit blocks, and the model still computes and trains.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft::core::adapted::packed::{BaseQuantization, quantize_base_weights};
use peft::core::{AdapterSites, SiteMut};
use peft::models::llama::LlamaForCausalLM;
use peft::{LoraConfig, get_peft_model};
use std::path::PathBuf;

fn llama(device: &Device) -> LlamaForCausalLM {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/llama");
    LlamaForCausalLM::from_pretrained(dir, device).expect("loads")
}

fn ids(device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(vec![5i64, 9, 14, 20, 3, 7, 11, 2], [2, 4]), device)
}

fn packed(model: &impl AdapterSites) -> usize {
    let mut n = 0;
    model.visit_sites(&mut |_, site| n += usize::from(matches!(site, SiteMut::Linear(l) if l.packed.is_some())));
    n
}

fn relative_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
    let scale: f32 = b.clone().abs().max().into_scalar();
    let diff: f32 = (a - b).abs().max().into_scalar();
    diff / scale
}

#[test]
fn a_quantized_llama_computes_close_to_f32_and_trains_an_f32_adapter() {
    let device = Device::flex().autodiff();
    let base = llama(&device);
    let reference = base.forward(ids(&device), None);
    // A tiny random model (weights drawn with std 0.2, 32 wide) is a harsh case for 4 bits: a
    // block's step is its largest weight / 7. The per-weight bound is tested in peft-core; here,
    // that the model computes, and that 8 bits stay far closer than 4.
    let mut offs = Vec::new();
    for (quantization, tolerance) in [(BaseQuantization::Int8, 0.06), (BaseQuantization::Int4, 0.6)] {
        let mut model = base.clone();
        let n = quantize_base_weights(&mut model, quantization).expect("quantizes");
        assert_eq!(n, 2 * 7 + 1, "{quantization:?}: seven projections per layer and the untied head");
        assert_eq!(packed(&model), n);
        let off = relative_diff(model.forward(ids(&device), None), reference.clone());
        offs.push(off);
        assert!(off > 0.0 && off < tolerance, "{quantization:?}: logits {off} off (relative)");

        let mut peft = get_peft_model(model, LoraConfig::new(4).with_target_modules("all-linear")).expect("attaches");
        let before = peft.model().forward(ids(&device), None);
        let loss = peft.model().forward(ids(&device), None).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &peft);
        peft = AdamWConfig::new().init().step(1e-2, peft, grads);
        assert_eq!(packed(peft.model()), n, "the step leaves the base quantized");
        assert!(relative_diff(peft.model().forward(ids(&device), None), before) > 1e-4, "the adapter learned");
        let merged = peft.merge_and_unload().expect("merges");
        assert_eq!(packed(&merged), 1, "merged layers are stored dequantized; the head, with no adapter, stays quantized");
    }
    assert!(offs[0] * 4.0 < offs[1], "int8 is closer to f32 than int4: {offs:?}");

    // A bf16 cast of a packed model leaves the packed layers' placeholders alone and still runs.
    let mut model = base.clone();
    quantize_base_weights(&mut model, BaseQuantization::Int4).expect("quantizes");
    let peft = get_peft_model(model, LoraConfig::new(4).with_target_modules(["q_proj"])).expect("attaches");
    let cast = peft.cast_base_weights(burn::tensor::FloatDType::BF16);
    let layer = &cast.model().model.layers[0].self_attn.q_proj;
    assert_eq!(layer.base_layer.weight.val().dtype(), burn::tensor::DType::F32, "the placeholder is not cast");
    assert_eq!(cast.model().model.norm.weight.val().dtype(), burn::tensor::DType::BF16);
    assert_eq!(cast.model().forward(ids(&device), None).dims(), [2, 4, 96]);
    assert_eq!(base.num_params(), llama(&device).num_params());
}

#[test]
fn dora_over_a_quantized_base_reads_the_dequantized_weights() {
    // DoRA normalises by the base's column norms: over a packed base it must see the dequantized
    // weights (a placeholder would give zero norms and non-finite outputs).
    let device = Device::flex();
    let config = || LoraConfig::new(4).with_target_modules(["q_proj", "v_proj"]).with_use_dora(true).with_init_lora_weights(peft::InitLoraWeights::Random);
    let base = llama(&device);
    device.seed(3);
    let dense = get_peft_model(base.clone(), config()).expect("attaches");
    let mut quantized = base;
    quantize_base_weights(&mut quantized, BaseQuantization::Int8).expect("quantizes");
    device.seed(3);
    let packed_dora = get_peft_model(quantized, config()).expect("attaches");
    let (want, got) = (dense.model().forward(ids(&device), None), packed_dora.model().forward(ids(&device), None));
    assert!(got.clone().is_finite().all().into_scalar::<bool>());
    let off = relative_diff(got, want);
    assert!(off < 0.06, "DoRA over int8 is {off} off DoRA over f32 (relative)");
}
