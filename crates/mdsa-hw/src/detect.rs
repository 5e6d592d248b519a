use sysinfo::{
    CpuRefreshKind, MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System,
};

use crate::profile::{CpuInfo, GpuProbe, HardwareProfile, MemoryInfo};
use crate::simd::SimdFeatures;

/// Reads the machine's hardware into a [`HardwareProfile`].
///
/// Detection never fails as a whole: whatever the platform does not report is
/// `None` in the profile, so callers can decide how careful to be.
#[derive(Debug, Clone, Copy, Default)]
pub struct HardwareDetector;

impl HardwareDetector {
    /// Detects the CPU, memory and (with the `gpu` feature) GPUs of this machine.
    pub fn detect() -> HardwareProfile {
        let (gpus, gpu_probe) = detect_gpus();
        HardwareProfile {
            os: System::long_os_version().ok(),
            cpu: detect_cpu(),
            memory: detect_memory(),
            gpus,
            gpu_probe,
        }
    }
}

fn detect_cpu() -> CpuInfo {
    let system = System::new_with_specifics(
        RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing().with_frequency()),
    )
    .ok();
    let first = system.as_ref().and_then(|s| s.cpus().first());
    let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    CpuInfo {
        brand: first.and_then(|cpu| non_empty(cpu.brand())),
        vendor: first.and_then(|cpu| non_empty(cpu.vendor_id())),
        arch: std::env::consts::ARCH.to_string(),
        physical_cores: System::physical_core_count().ok().filter(|&n| n > 0),
        logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        frequency_mhz: first.map(|cpu| cpu.frequency()).filter(|&mhz| mhz > 0),
        simd: SimdFeatures::detect(),
    }
}

/// Reads total and available RAM and this process's RSS.
pub(crate) fn detect_memory() -> MemoryInfo {
    let Ok(mut system) = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    ) else {
        return MemoryInfo {
            total_bytes: None,
            available_bytes: None,
            process_rss_bytes: None,
        };
    };
    let process_rss_bytes = sysinfo::get_current_pid().ok().and_then(|pid| {
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        system.process(pid).map(|p| p.memory()).filter(|&b| b > 0)
    });
    MemoryInfo {
        total_bytes: Some(system.total_memory()).filter(|&b| b > 0),
        available_bytes: Some(system.available_memory()).filter(|&b| b > 0),
        process_rss_bytes,
    }
}

#[cfg(feature = "gpu")]
fn detect_gpus() -> (Vec<crate::profile::GpuInfo>, GpuProbe) {
    (crate::gpu::enumerate(), GpuProbe::Enumerated)
}

#[cfg(not(feature = "gpu"))]
fn detect_gpus() -> (Vec<crate::profile::GpuInfo>, GpuProbe) {
    (Vec::new(), GpuProbe::NotCompiled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_reports_this_machine() {
        let profile = HardwareDetector::detect();
        assert!(profile.cpu.logical_cores >= 1);
        assert_eq!(profile.cpu.arch, std::env::consts::ARCH);
        let total = profile
            .memory
            .total_bytes
            .expect("Linux and macOS report total RAM");
        let available = profile
            .memory
            .available_bytes
            .expect("available RAM is reported");
        assert!(available <= total, "available {available} > total {total}");
        let rss = profile
            .memory
            .process_rss_bytes
            .expect("our own RSS is readable");
        assert!(rss > 0 && rss < total);
        if let Some(physical) = profile.cpu.physical_cores {
            assert!(physical <= profile.cpu.logical_cores.max(physical));
        }
        // Without a GPU (CI), the list is empty rather than an error.
        if profile.gpu_probe == GpuProbe::NotCompiled {
            assert!(profile.gpus.is_empty());
        }
    }
}
