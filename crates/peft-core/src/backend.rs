//! The backends a build can run on, as a type: which are compiled in, the device of each, the one
//! a run uses (`PEFT_DEVICE`), and how closely each matches an f32 reference.
//!
//! Library code never names a backend: it takes a [`Device`]. Programs and tests pick one here.
//! Each backend is a Cargo feature of `peft` (forwarded to this crate): `flex` (the default CPU
//! backend), `cpu` (CubeCL's CPU runtime), `wgpu`, `vulkan`, `metal`, `cuda` and `tch` (libtorch).

use crate::{Error, Result};
use burn::tensor::{DType, Device};
use std::fmt;
use std::str::FromStr;

/// The environment variable that picks the backend of a run (a [`Backend`] name).
pub const DEVICE_VARIABLE: &str = "PEFT_DEVICE";

/// A Burn backend, by the name `--device` and `PEFT_DEVICE` take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Burn's default CPU backend (every core through rayon, SIMD kernels).
    Flex,
    /// CubeCL's CPU runtime (compiled through LLVM/MLIR).
    Cpu,
    /// wgpu on whatever graphics API the platform offers (Vulkan, Metal, DX12).
    Wgpu,
    /// wgpu through Vulkan only (SPIR-V kernels).
    Vulkan,
    /// wgpu through Metal only (Apple).
    Metal,
    /// NVIDIA GPUs through CUDA.
    Cuda,
    /// libtorch, the C++ library inside PyTorch.
    Tch,
}

impl Backend {
    /// Every backend, in the order the default is picked from those compiled in.
    pub const ALL: [Backend; 7] = [Backend::Flex, Backend::Cpu, Backend::Wgpu, Backend::Vulkan, Backend::Metal, Backend::Cuda, Backend::Tch];

    /// The name `--device` takes, which is also the Cargo feature that compiles it in.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Vulkan => "vulkan",
            Backend::Metal => "metal",
            Backend::Cuda => "cuda",
            Backend::Tch => "tch",
        }
    }

    /// Whether this build has the backend (its Cargo feature is on).
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Cpu => cfg!(feature = "cpu"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Vulkan => cfg!(feature = "vulkan"),
            Backend::Metal => cfg!(feature = "metal"),
            Backend::Cuda => cfg!(feature = "cuda"),
            Backend::Tch => cfg!(feature = "tch"),
        }
    }

    /// The backends this build has, in the order of [`Backend::ALL`].
    pub fn compiled() -> Vec<Backend> {
        Backend::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// The backend of a run: `PEFT_DEVICE` when set, else the first one compiled in.
    ///
    /// # Errors
    /// `PEFT_DEVICE` names no backend, or one this build lacks; or no backend is compiled in.
    pub fn selected() -> Result<Backend> {
        match std::env::var(DEVICE_VARIABLE) {
            Ok(name) => {
                let backend: Backend = name.parse().map_err(|_| unknown(&format!("{DEVICE_VARIABLE}={name}")))?;
                backend.ensure_compiled()?;
                Ok(backend)
            }
            Err(_) => Backend::compiled().first().copied().ok_or_else(|| Error::Unsupported {
                what: "a build without a backend".into(),
                supported: "one of the Cargo features flex (the default), cpu, wgpu, vulkan, metal, cuda, tch".into(),
            }),
        }
    }

    /// The backend of a run (`--device` when given, else [`Backend::selected`]).
    pub fn chosen(flag: Option<Backend>) -> Result<Backend> {
        match flag {
            Some(backend) => backend.ensure_compiled().map(|()| backend),
            None => Backend::selected(),
        }
    }

    /// An error naming the backends this build has when it lacks `self`.
    pub fn ensure_compiled(self) -> Result<()> {
        if self.is_compiled() {
            return Ok(());
        }
        Err(Error::Unsupported {
            what: format!("device `{self}` in this build"),
            supported: format!("{} (rebuild with the Cargo feature `{self}` for `{self}`)", names(&Backend::compiled())),
        })
    }

    /// The backend's default device (the first GPU for the GPU backends).
    ///
    /// # Errors
    /// The backend is not compiled in.
    pub fn device(self) -> Result<Device> {
        self.ensure_compiled()?;
        match self {
            #[cfg(feature = "flex")]
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "cpu")]
            Backend::Cpu => Ok(Device::cpu()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "vulkan")]
            Backend::Vulkan => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "metal")]
            Backend::Metal => Ok(Device::metal(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0)),
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            Backend::Tch => Ok(Device::libtorch()),
            #[allow(unreachable_patterns)]
            _ => Err(unknown(self.name())),
        }
    }

    /// The backend a device belongs to, among those compiled in (devices compare by hardware,
    /// whether or not autodiff wraps them). wgpu, Vulkan and Metal share one device type, so a
    /// wgpu-family device answers with the first of them compiled in.
    pub fn of(device: &Device) -> Option<Backend> {
        Backend::compiled().into_iter().find(|b| b.device().is_ok_and(|d| d == *device))
    }

    /// Whether tensors of this backend live in host memory, where a buffer built on the CPU
    /// costs nothing to hand over.
    pub fn host_memory(self) -> bool {
        matches!(self, Backend::Flex | Backend::Tch)
    }

    /// How far outputs of unit magnitude may lie from an f32 reference computed elsewhere (the
    /// Python library on PyTorch's CPU kernels) when the model computes in `dtype` here.
    ///
    /// One table for every test: the sums run in a different order on each backend (tiled GPU
    /// kernels, lavapipe's software Vulkan), and half precision keeps 11 (f16) or 8 (bf16)
    /// significant bits.
    pub fn tolerance(self, dtype: DType) -> f32 {
        let f32_tolerance = match self {
            Backend::Flex | Backend::Tch => 1e-4,
            Backend::Cpu | Backend::Wgpu | Backend::Vulkan | Backend::Metal | Backend::Cuda => 5e-4,
        };
        match dtype {
            DType::F16 => 2e-2,
            DType::BF16 => 8e-2,
            _ => f32_tolerance,
        }
    }
}

/// The device of a run: the default device of [`Backend::selected`].
///
/// # Errors
/// `PEFT_DEVICE` names a backend this build lacks, or none is compiled in.
pub fn default_device() -> Result<Device> {
    Backend::selected()?.device()
}

/// [`Backend::tolerance`] for the run's backend ([`Backend::selected`]; flex's when that fails).
pub fn tolerance(dtype: DType) -> f32 {
    Backend::selected().unwrap_or(Backend::Flex).tolerance(dtype)
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(name: &str) -> Result<Backend> {
        let wanted = name.trim().to_ascii_lowercase();
        Backend::ALL.into_iter().find(|b| b.name() == wanted).ok_or_else(|| unknown(name))
    }
}

fn names(backends: &[Backend]) -> String {
    backends.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
}

fn unknown(name: &str) -> Error {
    Error::Unsupported { what: format!("backend `{name}`"), supported: format!("{} (compiled in here: {})", names(&Backend::ALL), names(&Backend::compiled())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_names_list_the_choices() {
        for backend in Backend::ALL {
            assert_eq!(backend.name().parse::<Backend>().ok(), Some(backend));
        }
        assert_eq!("WGPU".parse::<Backend>().ok(), Some(Backend::Wgpu));
        let message = "opengl".parse::<Backend>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("opengl") && message.contains("flex, cpu, wgpu"), "{message}");
    }

    #[test]
    fn a_device_knows_its_backend_with_or_without_autodiff() {
        let Ok(flex) = Backend::Flex.device() else { return };
        assert_eq!(Backend::of(&flex), Some(Backend::Flex));
        assert_eq!(Backend::of(&flex.autodiff()), Some(Backend::Flex));
    }

    #[test]
    fn a_backend_missing_from_the_build_names_its_feature() {
        let missing = Backend::ALL.into_iter().find(|b| !b.is_compiled());
        if let Some(backend) = missing {
            let message = backend.device().err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(&format!("Cargo feature `{backend}`")), "{message}");
        }
    }

    #[test]
    fn half_precision_is_looser_than_f32_on_every_backend() {
        for backend in Backend::ALL {
            let f32_tol = backend.tolerance(DType::F32);
            assert!(f32_tol < backend.tolerance(DType::F16) && backend.tolerance(DType::F16) < backend.tolerance(DType::BF16));
        }
    }
}
