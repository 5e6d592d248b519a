use crate::device::Device;

/// Everything that can go wrong in hardware detection, budgeting and device choice.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    /// A device string such as `gpu:x` could not be parsed.
    #[error(
        "invalid device preference {found:?}: expected \"auto\", \"cpu\", \"gpu\" or \"gpu:N\""
    )]
    InvalidDevicePreference {
        /// The text that was given.
        found: String,
    },
    /// A budget fraction outside (0, 1].
    #[error("invalid memory budget: {field} must be in (0, 1], found {found}")]
    InvalidFraction {
        /// Which configuration field.
        field: &'static str,
        /// The value that was given.
        found: f64,
    },
    /// The user asked for a GPU index that does not exist.
    #[error("gpu:{index} was requested but {}", if *.available == 0 { "no GPU was detected".to_string() } else { format!("only {} GPU(s) exist (gpu:0..gpu:{})", .available, .available - 1) })]
    NoSuchGpu {
        /// The requested index.
        index: usize,
        /// How many GPUs were detected.
        available: usize,
    },
    /// A GPU was requested but this build has no GPU backend.
    #[error(
        "{device} was requested but this build has no GPU backend (rebuild with the `wgpu` or `cuda` feature)"
    )]
    NoGpuBackend {
        /// The requested device.
        device: Device,
    },
    /// The model does not fit the budget of the requested device.
    #[error("the model needs {} but the budget of {device} is {}", crate::format_bytes(*.need_bytes), crate::format_bytes(*.budget_bytes))]
    DoesNotFit {
        /// The device that was tried.
        device: Device,
        /// The bytes the model needs.
        need_bytes: u64,
        /// The device's budget.
        budget_bytes: u64,
    },
    /// No device could take the model.
    #[error("no device can hold a model of {}: {}", crate::format_bytes(*.need_bytes), .tried.join("; "))]
    NothingFits {
        /// The bytes the model needs.
        need_bytes: u64,
        /// One line per device that was considered, saying why it was refused.
        tried: Vec<String>,
    },
    /// The operating system refused to report something essential.
    #[error("could not read system information: {0}")]
    System(String),
}
