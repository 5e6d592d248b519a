use serde::{Deserialize, Serialize};

use crate::simd::SimdFeatures;

/// What this machine offers for inference, as detected at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HardwareProfile {
    /// Operating system name and version, if the platform reports it.
    pub os: Option<String>,
    /// The processor.
    pub cpu: CpuInfo,
    /// System and process memory.
    pub memory: MemoryInfo,
    /// GPUs found by the GPU probe; empty when there are none or the probe is off.
    pub gpus: Vec<GpuInfo>,
    /// Whether GPUs were looked for at all, so an empty list can be read correctly.
    pub gpu_probe: GpuProbe,
}

/// The processor: identity, cores and SIMD features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// Marketing name, such as "AMD EPYC 9654 96-Core Processor".
    pub brand: Option<String>,
    /// Vendor id, such as "GenuineIntel".
    pub vendor: Option<String>,
    /// Target architecture this binary runs as, such as "x86_64".
    pub arch: String,
    /// Physical cores, when the platform reports them.
    pub physical_cores: Option<usize>,
    /// Logical cores (hardware threads) available to this process.
    pub logical_cores: usize,
    /// Base frequency in MHz, when reported.
    pub frequency_mhz: Option<u64>,
    /// SIMD instruction sets detected at run time.
    pub simd: SimdFeatures,
}

/// System RAM and this process's resident memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryInfo {
    /// Total physical memory.
    pub total_bytes: Option<u64>,
    /// Memory available to new allocations without swapping.
    pub available_bytes: Option<u64>,
    /// Resident set size of this process.
    pub process_rss_bytes: Option<u64>,
}

/// One GPU as the graphics API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Position in [`HardwareProfile::gpus`]; `gpu:N` refers to it.
    pub index: usize,
    /// Adapter name, such as "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Vendor name derived from the PCI vendor id, or the id in hex.
    pub vendor: String,
    /// PCI vendor id (0 when the backend does not report one).
    pub vendor_id: u32,
    /// PCI device id (0 when the backend does not report one).
    pub device_id: u32,
    /// Discrete, integrated, virtual or a software rasteriser.
    pub device_type: GpuDeviceType,
    /// Graphics API the adapter was found through: Vulkan, Metal, Dx12, Gl.
    pub backend: String,
    /// Driver name and version, when reported.
    pub driver: Option<String>,
    /// Dedicated memory in bytes, only where the platform reports it.
    pub memory_bytes: Option<u64>,
}

/// Kind of GPU adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuDeviceType {
    /// A separate card with its own memory.
    Discrete,
    /// Shares system memory with the CPU.
    Integrated,
    /// A virtualised GPU.
    Virtual,
    /// A software implementation running on the CPU (such as llvmpipe).
    Software,
    /// Anything else.
    Other,
}

impl GpuDeviceType {
    /// Whether the adapter is real hardware worth offloading to.
    pub fn is_hardware(self) -> bool {
        matches!(self, Self::Discrete | Self::Integrated | Self::Virtual)
    }
}

impl std::fmt::Display for GpuDeviceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Discrete => "discrete",
            Self::Integrated => "integrated",
            Self::Virtual => "virtual",
            Self::Software => "software",
            Self::Other => "other",
        })
    }
}

/// Whether and how GPUs were looked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum GpuProbe {
    /// This build has no GPU probe (the `gpu` feature is off).
    NotCompiled,
    /// Adapters were enumerated; the list may be empty.
    Enumerated,
}

impl HardwareProfile {
    /// The GPU with index `index`, if detected.
    pub fn gpu(&self, index: usize) -> Option<&GpuInfo> {
        self.gpus.get(index)
    }
}

/// Formats a byte count with a binary unit, e.g. `1.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_formatted_with_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(24 * 1024 * 1024 * 1024), "24.0 GiB");
    }
}
