//! Hardware detection for mdsa: what this machine can run, and where.
//!
//! mdsa loads small language models on demand under a memory budget. Everything
//! that decision needs about the machine lives here, and nothing else of mdsa:
//!
//! - [`HardwareDetector::detect`] reads the CPU (brand, cores, the SIMD features
//!   inference kernels care about), RAM and this process's resident memory, and,
//!   with the `gpu` feature, the GPUs that wgpu can enumerate. A value the platform
//!   does not report is `None`, never a guess.
//! - [`MemoryBudget`] turns the profile into the bytes the model manager may use
//!   on each device (a fraction of what is available, or an explicit override).
//! - [`choose_device`] picks a device for a model of a given size and says why, or
//!   refuses with an error naming every device it tried.
//! - [`MemoryMonitor`] samples resident and available memory on demand or at an
//!   interval.
//!
//! The crate is a bottom layer: it depends on no other mdsa crate, so it can be
//! used on its own (`mdsa hw` is a thin printer over it).

mod budget;
mod detect;
mod device;
mod error;
#[cfg(feature = "gpu")]
mod gpu;
mod monitor;
mod profile;
mod simd;

pub use budget::{BudgetConfig, MemoryBudget};
pub use detect::HardwareDetector;
pub use device::{Device, DeviceChoice, DevicePreference, DeviceRequest, choose_device};
pub use error::HwError;
pub use monitor::{MemoryMonitor, MemorySample, MonitorHandle};
pub use profile::{
    CpuInfo, GpuDeviceType, GpuInfo, GpuProbe, HardwareProfile, MemoryInfo, format_bytes,
};
pub use simd::SimdFeatures;

#[cfg(test)]
mod test_support {
    //! Synthetic profiles for budget and device-choice tests.
    use crate::profile::{CpuInfo, GpuDeviceType, GpuInfo, GpuProbe, HardwareProfile, MemoryInfo};
    use crate::simd::SimdFeatures;

    pub(crate) const GIB: u64 = 1024 * 1024 * 1024;

    /// A machine with `available` RAM and one discrete GPU per entry of `gpu_memory`.
    pub(crate) fn profile_with(
        available: Option<u64>,
        gpu_memory: &[Option<u64>],
    ) -> HardwareProfile {
        HardwareProfile {
            os: None,
            cpu: CpuInfo {
                brand: Some("Synthetic CPU".into()),
                vendor: None,
                arch: "x86_64".into(),
                physical_cores: Some(2),
                logical_cores: 2,
                frequency_mhz: None,
                simd: SimdFeatures::default(),
            },
            memory: MemoryInfo {
                total_bytes: available.map(|b| b * 2),
                available_bytes: available,
                process_rss_bytes: None,
            },
            gpus: gpu_memory
                .iter()
                .enumerate()
                .map(|(index, memory_bytes)| GpuInfo {
                    index,
                    name: format!("Synthetic GPU {index}"),
                    vendor: "NVIDIA".into(),
                    vendor_id: 0x10de,
                    device_id: 0,
                    device_type: GpuDeviceType::Discrete,
                    backend: "Vulkan".into(),
                    driver: None,
                    memory_bytes: *memory_bytes,
                })
                .collect(),
            gpu_probe: GpuProbe::Enumerated,
        }
    }
}

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
