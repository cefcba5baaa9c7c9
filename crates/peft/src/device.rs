//! Picking a device from the backends compiled in (see [`Backend`]).

use burn::tensor::Device;
pub use peft_core::Backend;
pub use peft_core::backend::DEVICE_VARIABLE;
use peft_core::Result;

/// The backends this build can run on, by the names `--device` takes.
pub fn available_backends() -> Vec<&'static str> {
    Backend::compiled().into_iter().map(Backend::name).collect()
}

/// The device for a backend name (`flex`, `cpu`, `wgpu`, `vulkan`, `metal`, `cuda`, `tch`).
///
/// # Errors
/// An unknown name, or a backend this build lacks: the error names the ones it has and the Cargo
/// feature to add.
pub fn device(name: &str) -> Result<Device> {
    name.parse::<Backend>()?.device()
}

/// The device of a run: `PEFT_DEVICE` when set, else the first backend compiled in, in the order
/// of [`Backend::ALL`].
///
/// # Errors
/// `PEFT_DEVICE` names a backend this build lacks, or none is compiled in.
pub fn default_device() -> Result<Device> {
    peft_core::backend::default_device()
}
