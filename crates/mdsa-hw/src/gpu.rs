//! GPU enumeration through wgpu (feature `gpu`).

use crate::profile::{GpuDeviceType, GpuInfo};

/// Lists every adapter wgpu can see on Vulkan, Metal, DX12 and GL.
///
/// wgpu does not report dedicated memory, so `memory_bytes` is filled only where
/// the platform exposes it: Linux sysfs for AMD cards, `nvidia-smi` for NVIDIA.
pub(crate) fn enumerate() -> Vec<GpuInfo> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters
        .iter()
        .enumerate()
        .map(|(index, adapter)| {
            let info = adapter.get_info();
            let driver = [info.driver.trim(), info.driver_info.trim()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            GpuInfo {
                index,
                name: info.name.clone(),
                vendor: vendor_name(info.vendor),
                vendor_id: info.vendor,
                device_id: info.device,
                device_type: match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => GpuDeviceType::Discrete,
                    wgpu::DeviceType::IntegratedGpu => GpuDeviceType::Integrated,
                    wgpu::DeviceType::VirtualGpu => GpuDeviceType::Virtual,
                    wgpu::DeviceType::Cpu => GpuDeviceType::Software,
                    wgpu::DeviceType::Other => GpuDeviceType::Other,
                },
                backend: format!("{:?}", info.backend),
                driver: (!driver.is_empty()).then_some(driver),
                memory_bytes: sysfs_vram(&info.device_pci_bus_id)
                    .or_else(|| nvidia_vram(info.vendor, &info.device_pci_bus_id)),
            }
        })
        .collect()
}

fn vendor_name(id: u32) -> String {
    match id {
        0x10de => "NVIDIA".into(),
        0x1002 | 0x1022 => "AMD".into(),
        0x8086 => "Intel".into(),
        0x106b => "Apple".into(),
        0x13b5 => "ARM".into(),
        0x5143 => "Qualcomm".into(),
        0x10005 => "Mesa".into(),
        0 => "unknown".into(),
        other => format!("{other:#06x}"),
    }
}

/// Dedicated memory from Linux sysfs (the amdgpu driver publishes it); `None` elsewhere.
fn sysfs_vram(pci_bus_id: &str) -> Option<u64> {
    if pci_bus_id.is_empty() {
        return None;
    }
    let path = format!("/sys/bus/pci/devices/{pci_bus_id}/mem_info_vram_total");
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Total memory of an NVIDIA GPU from `nvidia-smi`, matched by PCI bus id.
fn nvidia_vram(vendor: u32, pci_bus_id: &str) -> Option<u64> {
    if vendor != 0x10de {
        return None;
    }
    let output = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=pci.bus_id,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let rows: Vec<(String, u64)> = text
        .lines()
        .filter_map(|line| {
            let (bus, mib) = line.split_once(',')?;
            Some((
                bus.trim().to_ascii_lowercase(),
                mib.trim().parse::<u64>().ok()?,
            ))
        })
        .collect();
    // nvidia-smi writes "00000000:41:00.0", wgpu "0000:41:00.0": compare the tails.
    let wanted = pci_bus_id.to_ascii_lowercase();
    let matching = rows.iter().find(|(bus, _)| {
        !wanted.is_empty() && (bus.ends_with(&wanted) || wanted.ends_with(bus.as_str()))
    });
    let (_, mib) = match (matching, rows.as_slice()) {
        (Some(row), _) => row,
        // One NVIDIA GPU and no bus id to match: it is that one.
        (None, [only]) => only,
        (None, _) => return None,
    };
    Some(mib * 1024 * 1024)
}
