//! A tiny model built for adapters, and helpers shared by the facade's tests.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use peft::core::{AdaptedEmbedding, AdaptedLinear, AdapterSites, SiteMut};

/// The device every test runs on (`PEFT_DEVICE` picks another compiled-in backend).
pub fn device() -> Device {
    peft::device::default_device().expect("a backend is compiled in")
}

/// One block: `x + v_proj(tanh(q_proj(x))) + down(tanh(up(x)))`.
#[derive(Module, Debug)]
pub struct Block {
    pub q_proj: AdaptedLinear,
    pub v_proj: AdaptedLinear,
    pub up: AdaptedLinear,
    pub down: AdaptedLinear,
}

/// Embedding, two blocks, a head: enough sites of each role to exercise the rules.
#[derive(Module, Debug)]
pub struct TinyNet {
    pub embed: AdaptedEmbedding,
    pub layers: Vec<Block>,
    pub head: AdaptedLinear,
}

pub mod cases;
pub mod fixtures;
pub mod toy;

pub const VOCAB: usize = 20;
pub const HIDDEN: usize = 8;

impl TinyNet {
    /// The same weights on every call (Burn initialises lazily, so the parameters are forced here,
    /// before anything else draws from the device's generator).
    pub fn new(device: &Device) -> Self {
        device.seed(7);
        let net = Self::random(device);
        let _ = net.forward(ids(device));
        net
    }

    fn random(device: &Device) -> Self {
        let block = || Block {
            q_proj: AdaptedLinear::new(HIDDEN, HIDDEN, true, device),
            v_proj: AdaptedLinear::new(HIDDEN, HIDDEN, false, device),
            up: AdaptedLinear::new(HIDDEN, 16, true, device),
            down: AdaptedLinear::new(16, HIDDEN, true, device),
        };
        TinyNet { embed: AdaptedEmbedding::new(VOCAB, HIDDEN, device), layers: vec![block(), block()], head: AdaptedLinear::new(HIDDEN, 3, true, device) }
    }

    /// # Shapes
    /// - `ids`: `[batch, tokens]`, output `[batch, tokens, 3]`
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let mut x = self.embed.forward(ids);
        for b in &self.layers {
            let attn = b.v_proj.forward(b.q_proj.forward(x.clone()).tanh());
            let mlp = b.down.forward(b.up.forward(x.clone()).tanh());
            x = x + attn + mlp;
        }
        self.head.forward(x)
    }
}

impl AdapterSites for TinyNet {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f("embed", SiteMut::Embedding(&mut self.embed));
        for (i, b) in self.layers.iter_mut().enumerate() {
            f(&format!("layers.{i}.q_proj"), SiteMut::Linear(&mut b.q_proj));
            f(&format!("layers.{i}.v_proj"), SiteMut::Linear(&mut b.v_proj));
            f(&format!("layers.{i}.up"), SiteMut::Linear(&mut b.up));
            f(&format!("layers.{i}.down"), SiteMut::Linear(&mut b.down));
        }
        f("head", SiteMut::Linear(&mut self.head));
    }

    fn output_head_paths(&self) -> Vec<String> {
        vec!["head".into()]
    }
}

pub fn ids(device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(vec![1i64, 5, 7, 2, 19, 3, 3, 0], [2, 4]), device)
}

/// Largest absolute difference between two tensors.
pub fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let v: Vec<f32> = (a - b).abs().max().into_data().convert::<f32>().try_into_vec().expect("f32 data");
    v[0]
}
