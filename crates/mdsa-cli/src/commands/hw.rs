//! `mdsa hw`: the hardware profile as a table or as JSON.

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use mdsa::hw::{
    BudgetConfig, GpuProbe, HardwareDetector, HardwareProfile, MemoryBudget, format_bytes,
};

/// Arguments of `mdsa hw`.
#[derive(Debug, clap::Args)]
pub(crate) struct HwArgs {
    /// Print one JSON object (profile and default budget) instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &HwArgs) -> anyhow::Result<()> {
    let profile = HardwareDetector::detect();
    let budget = MemoryBudget::from_profile(&profile, &BudgetConfig::default())
        .context("computing the default memory budget")?;
    if args.json {
        let value = serde_json::json!({ "profile": profile, "budget": budget });
        outln!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        outln!("{}", render(&profile, &budget));
    }
    Ok(())
}

fn render(profile: &HardwareProfile, budget: &MemoryBudget) -> String {
    let unknown = || "unknown".to_string();
    let bytes = |b: Option<u64>| b.map_or_else(unknown, format_bytes);
    let cpu = &profile.cpu;
    let simd = cpu.simd.names();
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["", "value"]);
    table.add_row(["OS".to_string(), profile.os.clone().unwrap_or_else(unknown)]);
    table.add_row(["CPU".to_string(), cpu.brand.clone().unwrap_or_else(unknown)]);
    table.add_row(["architecture".to_string(), cpu.arch.clone()]);
    table.add_row([
        "cores".to_string(),
        format!(
            "{} physical, {} logical",
            cpu.physical_cores.map_or_else(unknown, |n| n.to_string()),
            cpu.logical_cores
        ),
    ]);
    table.add_row([
        "frequency".to_string(),
        cpu.frequency_mhz
            .map_or_else(unknown, |mhz| format!("{mhz} MHz")),
    ]);
    table.add_row([
        "SIMD".to_string(),
        if simd.is_empty() {
            "none detected".to_string()
        } else {
            simd.join(" ")
        },
    ]);
    table.add_row(["RAM total".to_string(), bytes(profile.memory.total_bytes)]);
    table.add_row([
        "RAM available".to_string(),
        bytes(profile.memory.available_bytes),
    ]);
    table.add_row([
        "process RSS".to_string(),
        bytes(profile.memory.process_rss_bytes),
    ]);
    table.add_row(["model budget (cpu)".to_string(), bytes(budget.cpu_bytes)]);
    match (&profile.gpu_probe, profile.gpus.is_empty()) {
        (GpuProbe::NotCompiled, _) => {
            table.add_row([
                "GPUs".to_string(),
                "not probed (build with --features gpu)".to_string(),
            ]);
        }
        (GpuProbe::Enumerated, true) => {
            table.add_row(["GPUs".to_string(), "none found".to_string()]);
        }
        (GpuProbe::Enumerated, false) => {
            table.add_row(["GPUs".to_string(), format!("{} found", profile.gpus.len())]);
            for gpu in &profile.gpus {
                table.add_row([
                    format!("gpu:{}", gpu.index),
                    format!(
                        "{} ({} {}, {}), memory {}, budget {}",
                        gpu.name,
                        gpu.vendor,
                        gpu.device_type,
                        gpu.backend,
                        bytes(gpu.memory_bytes),
                        bytes(budget.gpu_bytes.get(gpu.index).copied().flatten()),
                    ),
                ]);
            }
        }
    }
    table.to_string()
}
