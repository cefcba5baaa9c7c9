//! `--dtype`: the float type a command loads the base model's weights in.

use peft::burn::tensor::FloatDType;

/// The float type of the base weights (adapters and the rows they train are always f32).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BaseDtype {
    /// 32-bit floats, as the weights are usually stored for fine-tuning.
    #[default]
    F32,
    /// IEEE half precision: half the memory; for backends that compute in it.
    F16,
    /// bfloat16: half the memory, f32's range; for backends that compute in it.
    Bf16,
}

impl BaseDtype {
    /// Runs `load` so that the weights it reads are created in this type, each converted as it
    /// is read (the model never exists in f32 first).
    pub fn load<T>(self, load: impl FnOnce() -> T) -> T {
        let dtype = match self {
            BaseDtype::F32 => return load(),
            BaseDtype::F16 => FloatDType::F16,
            BaseDtype::Bf16 => FloatDType::BF16,
        };
        peft::io::weights::with_load_dtype(dtype, load)
    }
}
