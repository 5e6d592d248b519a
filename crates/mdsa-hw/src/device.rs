use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::budget::MemoryBudget;
use crate::error::HwError;
use crate::profile::{GpuDeviceType, GpuInfo, GpuProbe, HardwareProfile, format_bytes};

/// Where a model may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// The CPU and system RAM.
    Cpu,
    /// A GPU, by its index in [`HardwareProfile::gpus`].
    Gpu {
        /// Index of the GPU.
        index: usize,
    },
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Gpu { index } => write!(f, "gpu:{index}"),
        }
    }
}

/// What the user asked for: `auto`, `cpu`, `gpu` (the first GPU) or `gpu:N`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DevicePreference {
    /// Let mdsa choose: a hardware GPU with room, else the CPU.
    #[default]
    Auto,
    /// Always the CPU.
    Cpu,
    /// This GPU.
    Gpu(usize),
}

impl FromStr for DevicePreference {
    type Err = HwError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || HwError::InvalidDevicePreference {
            found: s.to_string(),
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu(0)),
            other => other
                .strip_prefix("gpu:")
                .and_then(|n| n.parse().ok())
                .map(Self::Gpu)
                .ok_or_else(invalid),
        }
    }
}

impl TryFrom<String> for DevicePreference {
    type Error = HwError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<DevicePreference> for String {
    fn from(value: DevicePreference) -> Self {
        value.to_string()
    }
}

impl fmt::Display for DevicePreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Gpu(index) => write!(f, "gpu:{index}"),
        }
    }
}

/// A request to place one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRequest {
    /// Bytes the model needs while resident (weights plus caches).
    pub need_bytes: u64,
    /// What the user asked for.
    pub preference: DevicePreference,
    /// Whether this build has a GPU backend; without one only the CPU is possible.
    pub gpu_backend: bool,
}

/// The chosen device and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceChoice {
    /// The device.
    pub device: Device,
    /// One sentence a person can read, e.g. in `mdsa hw` or a load log line.
    pub reason: String,
}

/// Picks a device for a model, or explains why none can take it.
///
/// `auto` prefers a hardware GPU whose budget is known and large enough (discrete
/// before integrated, then the largest budget), then a discrete GPU whose memory
/// the platform does not report, then the CPU. Software rasterisers such as
/// llvmpipe are never chosen automatically: they are slower than the CPU path.
pub fn choose_device(
    profile: &HardwareProfile,
    budget: &MemoryBudget,
    request: DeviceRequest,
) -> Result<DeviceChoice, HwError> {
    let need = request.need_bytes;
    match request.preference {
        DevicePreference::Cpu => {
            cpu_choice(budget, need, "cpu was requested").map_err(|budget_bytes| {
                HwError::DoesNotFit {
                    device: Device::Cpu,
                    need_bytes: need,
                    budget_bytes,
                }
            })
        }
        DevicePreference::Gpu(index) => {
            let device = Device::Gpu { index };
            if !request.gpu_backend {
                return Err(HwError::NoGpuBackend { device });
            }
            let gpu = profile.gpu(index).ok_or(HwError::NoSuchGpu {
                index,
                available: profile.gpus.len(),
            })?;
            match budget.for_device(device) {
                Some(budget_bytes) if budget_bytes < need => Err(HwError::DoesNotFit {
                    device,
                    need_bytes: need,
                    budget_bytes,
                }),
                Some(budget_bytes) => Ok(DeviceChoice {
                    device,
                    reason: format!(
                        "{device} was requested: {} has a budget of {} for {}",
                        describe(gpu),
                        format_bytes(budget_bytes),
                        format_bytes(need)
                    ),
                }),
                None => Ok(DeviceChoice {
                    device,
                    reason: format!(
                        "{device} was requested: {} does not report its memory, so the {} budget is not checked",
                        describe(gpu),
                        format_bytes(need)
                    ),
                }),
            }
        }
        DevicePreference::Auto => choose_automatically(profile, budget, request),
    }
}

fn choose_automatically(
    profile: &HardwareProfile,
    budget: &MemoryBudget,
    request: DeviceRequest,
) -> Result<DeviceChoice, HwError> {
    let need = request.need_bytes;
    let mut tried = Vec::new();
    if request.gpu_backend {
        let mut fitting: Vec<(&GpuInfo, u64)> = Vec::new();
        let mut unreported: Vec<&GpuInfo> = Vec::new();
        for gpu in &profile.gpus {
            let device = Device::Gpu { index: gpu.index };
            if !gpu.device_type.is_hardware() {
                tried.push(format!("{device} ({}) is a software adapter", gpu.name));
                continue;
            }
            match budget.for_device(device) {
                Some(b) if b >= need => fitting.push((gpu, b)),
                Some(b) => tried.push(format!(
                    "{device} ({}) has a budget of {}",
                    gpu.name,
                    format_bytes(b)
                )),
                None if gpu.device_type == GpuDeviceType::Discrete => unreported.push(gpu),
                None => tried.push(format!(
                    "{device} ({}) shares system memory and does not report it",
                    gpu.name
                )),
            }
        }
        // Discrete first, then the most room.
        fitting.sort_by_key(|(gpu, b)| {
            (
                gpu.device_type != GpuDeviceType::Discrete,
                std::cmp::Reverse(*b),
            )
        });
        if let Some((gpu, b)) = fitting.first() {
            let device = Device::Gpu { index: gpu.index };
            return Ok(DeviceChoice {
                device,
                reason: format!(
                    "auto: {device} ({}) has a budget of {} for {}",
                    describe(gpu),
                    format_bytes(*b),
                    format_bytes(need)
                ),
            });
        }
        if let Some(gpu) = unreported.first() {
            let device = Device::Gpu { index: gpu.index };
            return Ok(DeviceChoice {
                device,
                reason: format!(
                    "auto: {device} ({}) is the first discrete GPU; it does not report its memory, so the {} budget is not checked",
                    describe(gpu),
                    format_bytes(need)
                ),
            });
        }
    } else if !profile.gpus.is_empty() {
        tried.push("GPUs were found but this build has no GPU backend".to_string());
    }
    let why_cpu = if profile.gpu_probe == GpuProbe::NotCompiled {
        "auto: GPUs not probed (build with --features gpu)".to_string()
    } else if profile.gpus.is_empty() {
        "auto: no GPU".to_string()
    } else {
        format!("auto: no GPU can take it ({})", tried.join("; "))
    };
    cpu_choice(budget, need, &why_cpu).map_err(|budget_bytes| {
        tried.push(format!(
            "cpu has a budget of {}",
            format_bytes(budget_bytes)
        ));
        HwError::NothingFits {
            need_bytes: need,
            tried,
        }
    })
}

/// The CPU if it fits; `Err(budget)` if it does not.
fn cpu_choice(budget: &MemoryBudget, need: u64, why: &str) -> Result<DeviceChoice, u64> {
    match budget.cpu_bytes {
        Some(b) if b < need => Err(b),
        Some(b) => Ok(DeviceChoice {
            device: Device::Cpu,
            reason: format!(
                "{why}; cpu has a budget of {} for {}",
                format_bytes(b),
                format_bytes(need)
            ),
        }),
        None => Ok(DeviceChoice {
            device: Device::Cpu,
            reason: format!(
                "{why}; available RAM is not reported, so the {} budget is not checked",
                format_bytes(need)
            ),
        }),
    }
}

fn describe(gpu: &GpuInfo) -> String {
    format!("{}, {} via {}", gpu.name, gpu.device_type, gpu.backend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::BudgetConfig;
    use crate::test_support::{GIB, profile_with};

    fn choose(
        profile: &HardwareProfile,
        need: u64,
        preference: &str,
        gpu_backend: bool,
    ) -> Result<DeviceChoice, HwError> {
        let budget = MemoryBudget::from_profile(profile, &BudgetConfig::default()).unwrap();
        let request = DeviceRequest {
            need_bytes: need,
            preference: preference.parse().unwrap(),
            gpu_backend,
        };
        choose_device(profile, &budget, request)
    }

    #[test]
    fn preferences_parse_and_print() {
        for (text, expected) in [
            ("auto", DevicePreference::Auto),
            ("CPU", DevicePreference::Cpu),
            ("gpu", DevicePreference::Gpu(0)),
            ("gpu:3", DevicePreference::Gpu(3)),
        ] {
            assert_eq!(text.parse::<DevicePreference>().unwrap(), expected);
        }
        assert_eq!(DevicePreference::Gpu(2).to_string(), "gpu:2");
        for bad in ["", "tpu", "gpu:", "gpu:-1", "gpu:x"] {
            let err = bad.parse::<DevicePreference>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn auto_without_gpu_uses_the_cpu_and_says_why() {
        let profile = profile_with(Some(10 * GIB), &[]);
        let choice = choose(&profile, GIB, "auto", true).unwrap();
        assert_eq!(choice.device, Device::Cpu);
        assert!(choice.reason.contains("no GPU"), "{}", choice.reason);
    }

    #[test]
    fn auto_says_when_gpus_were_never_probed() {
        let mut profile = profile_with(Some(10 * GIB), &[]);
        profile.gpu_probe = GpuProbe::NotCompiled;
        let choice = choose(&profile, GIB, "auto", false).unwrap();
        assert_eq!(choice.device, Device::Cpu);
        assert!(
            choice
                .reason
                .contains("GPUs not probed (build with --features gpu)"),
            "{}",
            choice.reason
        );
    }

    #[test]
    fn auto_prefers_a_gpu_that_fits() {
        let profile = profile_with(Some(10 * GIB), &[Some(4 * GIB), Some(16 * GIB)]);
        let choice = choose(&profile, 2 * GIB, "auto", true).unwrap();
        assert_eq!(
            choice.device,
            Device::Gpu { index: 1 },
            "largest budget wins"
        );
        let choice = choose(&profile, 8 * GIB, "auto", true).unwrap();
        assert_eq!(choice.device, Device::Gpu { index: 1 });
    }

    #[test]
    fn auto_falls_back_to_cpu_when_gpus_are_too_small() {
        let profile = profile_with(Some(20 * GIB), &[Some(2 * GIB)]);
        let choice = choose(&profile, 4 * GIB, "auto", true).unwrap();
        assert_eq!(choice.device, Device::Cpu);
        assert!(choice.reason.contains("gpu:0"), "{}", choice.reason);
    }

    #[test]
    fn auto_ignores_gpus_without_a_backend_and_software_adapters() {
        let profile = profile_with(Some(20 * GIB), &[Some(16 * GIB)]);
        assert_eq!(
            choose(&profile, GIB, "auto", false).unwrap().device,
            Device::Cpu
        );
        let mut software = profile_with(Some(20 * GIB), &[Some(16 * GIB)]);
        software.gpus[0].device_type = GpuDeviceType::Software;
        let choice = choose(&software, GIB, "auto", true).unwrap();
        assert_eq!(choice.device, Device::Cpu);
        assert!(choice.reason.contains("software"), "{}", choice.reason);
    }

    #[test]
    fn auto_uses_a_discrete_gpu_with_unreported_memory_before_the_cpu() {
        let profile = profile_with(Some(20 * GIB), &[None]);
        let choice = choose(&profile, GIB, "auto", true).unwrap();
        assert_eq!(choice.device, Device::Gpu { index: 0 });
        assert!(choice.reason.contains("not checked"), "{}", choice.reason);
    }

    #[test]
    fn nothing_fits_is_an_error_naming_every_device() {
        let profile = profile_with(Some(2 * GIB), &[Some(GIB)]);
        let err = choose(&profile, 100 * GIB, "auto", true).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, HwError::NothingFits { .. }));
        assert!(
            text.contains("100.0 GiB") && text.contains("gpu:0") && text.contains("cpu"),
            "{text}"
        );
    }

    #[test]
    fn explicit_cpu_checks_the_budget() {
        let profile = profile_with(Some(2 * GIB), &[Some(16 * GIB)]);
        assert_eq!(
            choose(&profile, GIB, "cpu", true).unwrap().device,
            Device::Cpu
        );
        let err = choose(&profile, 4 * GIB, "cpu", true).unwrap_err();
        assert!(
            matches!(
                err,
                HwError::DoesNotFit {
                    device: Device::Cpu,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn explicit_gpu_is_checked() {
        let profile = profile_with(Some(20 * GIB), &[Some(4 * GIB)]);
        assert_eq!(
            choose(&profile, GIB, "gpu:0", true).unwrap().device,
            Device::Gpu { index: 0 }
        );
        let err = choose(&profile, GIB, "gpu:1", true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gpu:1 was requested but only 1 GPU(s) exist (gpu:0..gpu:0)"
        );
        let err = choose(&profile, 8 * GIB, "gpu:0", true).unwrap_err();
        assert!(matches!(err, HwError::DoesNotFit { .. }), "{err}");
        let err = choose(&profile, GIB, "gpu:0", false).unwrap_err();
        assert!(matches!(err, HwError::NoGpuBackend { .. }), "{err}");
        let none = profile_with(Some(20 * GIB), &[]);
        let err = choose(&none, GIB, "gpu", true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gpu:0 was requested but no GPU was detected"
        );
    }

    #[test]
    fn unknown_ram_does_not_block_the_cpu() {
        let profile = profile_with(None, &[]);
        let choice = choose(&profile, 100 * GIB, "auto", true).unwrap();
        assert_eq!(choice.device, Device::Cpu);
        assert!(choice.reason.contains("not reported"), "{}", choice.reason);
    }
}
