//! The fixtures' `toy` model in Burn: an embedding, a 1-D and a 2-D convolution, a linear layer
//! and a GPT-2 style `Conv1D` (fan-in/fan-out), exactly as `fixtures/generate.py` defines it.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv1dConfig, Conv2dConfig};
use burn::nn::{PaddingConfig1d, PaddingConfig2d};
use burn::tensor::{Device, Int, Tensor};
use peft::core::{AdaptedConv1d, AdaptedConv2d, AdaptedEmbedding, AdaptedLinear, AdapterSites, SiteMut};
use peft::io::tensors::TensorMap;

#[derive(Module, Debug)]
pub struct Toy {
    pub emb: AdaptedEmbedding,
    pub conv1d: AdaptedConv1d,
    pub conv2d: AdaptedConv2d,
    pub lin: AdaptedLinear,
    pub c1d: AdaptedLinear,
}

fn set<const D: usize>(p: &mut Param<Tensor<D>>, t: Tensor<D>) {
    *p = Param::from_tensor(t);
}

impl Toy {
    /// Builds the toy from its safetensors weights (PyTorch layouts).
    pub fn load(w: &TensorMap, device: &Device) -> Toy {
        let t2 = |k: &str| Tensor::<2>::from_data(w[k].clone(), device);
        let t1 = |k: &str| Tensor::<1>::from_data(w[k].clone(), device);
        let mut emb = AdaptedEmbedding::new(16, 8, device);
        set(&mut emb.base_layer.weight, t2("emb.weight"));
        let mut conv1d = Conv1dConfig::new(8, 6, 3).with_padding(PaddingConfig1d::Explicit(1, 1)).init(device);
        set(&mut conv1d.weight, Tensor::<3>::from_data(w["conv1d.weight"].clone(), device));
        conv1d.bias = Some(Param::from_tensor(t1("conv1d.bias")));
        let mut conv2d = Conv2dConfig::new([1, 4], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device);
        set(&mut conv2d.weight, Tensor::<4>::from_data(w["conv2d.weight"].clone(), device));
        conv2d.bias = Some(Param::from_tensor(t1("conv2d.bias")));
        let mut lin = AdaptedLinear::new(4, 5, true, device);
        // nn.Linear stores [out, in]; Burn [in, out].
        set(&mut lin.base_layer.weight, t2("lin.weight").transpose());
        lin.base_layer.bias = Some(Param::from_tensor(t1("lin.bias")));
        let mut c1d = AdaptedLinear::new(5, 3, true, device).with_fan_in_fan_out(true);
        // GPT-2's Conv1D already stores [in, out].
        set(&mut c1d.base_layer.weight, t2("c1d.weight"));
        c1d.base_layer.bias = Some(Param::from_tensor(t1("c1d.bias")));
        Toy { emb, conv1d: AdaptedConv1d::from_conv(conv1d), conv2d: AdaptedConv2d::from_conv(conv2d), lin, c1d }
    }

    /// # Shapes
    /// - `ids`: `[batch, tokens]`, output `[batch, tokens, 3]`
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let x = self.emb.forward(ids);
        let x = self.conv1d.forward(x.swap_dims(1, 2));
        let x = self.conv2d.forward(x.unsqueeze_dim::<4>(1));
        let [b, c, _, t] = x.dims();
        let x = x.mean_dim(2).reshape([b, c, t]).swap_dims(1, 2);
        self.c1d.forward(self.lin.forward(x))
    }
}

impl AdapterSites for Toy {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        f("emb", SiteMut::Embedding(&mut self.emb));
        f("conv1d", SiteMut::Conv1d(&mut self.conv1d));
        f("conv2d", SiteMut::Conv2d(&mut self.conv2d));
        f("lin", SiteMut::Linear(&mut self.lin));
        f("c1d", SiteMut::Linear(&mut self.c1d));
    }
}
