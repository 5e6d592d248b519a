//! Which burn backend runs the tensors, chosen at build time by cargo features
//! (`flex` for the CPU, the default; `wgpu`; `cuda`). Everything above this module
//! is one code path for every device: burn 0.22 tensors carry a runtime [`Device`].

use burn::tensor::Device;

use mdsa_engine::ModelError;

/// Names of the backends compiled into this build, CPU first.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut backends = Vec::new();
    if cfg!(feature = "flex") {
        backends.push("flex");
    }
    if cfg!(feature = "wgpu") {
        backends.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        backends.push("cuda");
    }
    backends
}

/// Whether this build can run models on a GPU.
pub fn has_gpu_backend() -> bool {
    cfg!(any(feature = "wgpu", feature = "cuda"))
}

/// The CPU device of this build, or the first GPU when no CPU backend is compiled.
pub fn default_device() -> Device {
    burn_device(mdsa_hw::Device::Cpu)
        .or_else(|_| burn_device(mdsa_hw::Device::Gpu { index: 0 }))
        .unwrap_or_default()
}

/// The burn device for a device chosen by `mdsa-hw`.
pub fn burn_device(device: mdsa_hw::Device) -> Result<Device, ModelError> {
    match device {
        mdsa_hw::Device::Cpu => cpu_device(),
        mdsa_hw::Device::Gpu { index } => gpu_device(index),
    }
}

#[cfg(feature = "flex")]
fn cpu_device() -> Result<Device, ModelError> {
    Ok(Device::flex())
}

#[cfg(not(feature = "flex"))]
fn cpu_device() -> Result<Device, ModelError> {
    Err(ModelError::Backend(
        "the CPU backend is not compiled in (enable the `flex` feature)".into(),
    ))
}

#[cfg(feature = "cuda")]
fn gpu_device(index: usize) -> Result<Device, ModelError> {
    Ok(Device::cuda(index))
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
fn gpu_device(index: usize) -> Result<Device, ModelError> {
    use burn::tensor::DeviceKind;
    // wgpu's own choice (a high-power adapter) for the first GPU; an explicit
    // discrete index otherwise.
    let kind = if index == 0 {
        DeviceKind::DefaultDevice
    } else {
        DeviceKind::DiscreteGpu(index)
    };
    Ok(Device::wgpu(kind))
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn gpu_device(index: usize) -> Result<Device, ModelError> {
    Err(ModelError::Backend(format!(
        "gpu:{index} was requested but this build has no GPU backend (enable the `wgpu` or `cuda` feature)"
    )))
}

/// The options the local backend reads from a spec (`chat_template` for
/// generators, `prompt_name` for encoders); any other key is rejected with this list.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalOptions {
    /// A Jinja chat template replacing the model's own.
    pub(crate) chat_template: Option<String>,
    /// The sentence-transformers prompt an encoder puts before every text
    /// (`"query"` for E5 and BGE); default: the model's `default_prompt_name`.
    pub(crate) prompt_name: Option<String>,
}

impl LocalOptions {
    /// Reads a spec's options; errors name the file, line, field and model.
    pub(crate) fn of(spec: &mdsa_engine::ModelSpec) -> Result<Self, ModelError> {
        Ok(spec.options()?)
    }
}
