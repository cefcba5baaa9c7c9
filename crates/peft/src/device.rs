//! Picking a device from the backends compiled in.

use burn::tensor::Device;
use peft_core::{Error, Result};

/// The backends this build can run on, by the names `--device` takes.
pub fn available_backends() -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg!(feature = "flex") {
        out.push("flex");
    }
    if cfg!(feature = "cpu") {
        out.push("cpu");
    }
    if cfg!(feature = "wgpu") {
        out.push("wgpu");
    }
    if cfg!(feature = "vulkan") {
        out.push("vulkan");
    }
    if cfg!(feature = "metal") {
        out.push("metal");
    }
    if cfg!(feature = "cuda") {
        out.push("cuda");
    }
    if cfg!(feature = "tch") {
        out.push("tch");
    }
    out
}

/// The device for a backend name (`flex`, `cpu`, `wgpu`, `vulkan`, `metal`, `cuda`, `tch`).
///
/// A backend this build lacks is an error naming the ones it has and the Cargo feature to add.
pub fn device(name: &str) -> Result<Device> {
    let missing = || Error::Unsupported {
        what: format!("device `{name}` in this build"),
        supported: format!("{} (rebuild with the Cargo feature `{name}` for more)", available_backends().join(", ")),
    };
    match name {
        #[cfg(feature = "flex")]
        "flex" => Ok(Device::flex()),
        #[cfg(feature = "cpu")]
        "cpu" => Ok(Device::cpu()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "vulkan")]
        "vulkan" => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "metal")]
        "metal" => Ok(Device::metal(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "tch" => Ok(Device::libtorch()),
        _ => Err(missing()),
    }
}

/// The first backend compiled in, in the order of [`available_backends`]; `PEFT_DEVICE` overrides it.
pub fn default_device() -> Result<Device> {
    if let Ok(name) = std::env::var("PEFT_DEVICE") {
        return device(&name);
    }
    let first = available_backends().first().copied().unwrap_or("none");
    device(first)
}
