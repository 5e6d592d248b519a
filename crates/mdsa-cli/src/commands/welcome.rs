//! Bare `mdsa`: what this is, what this machine has, which models are here,
//! which domains route, and what to run next.

use mdsa::engine::ModelBackend;
use mdsa::engine::{ModelRef, ResolveOptions};
use mdsa::hw::{BudgetConfig, GpuProbe, HardwareDetector, MemoryBudget, format_bytes};
use mdsa::local::LocalBackend;

use super::system::SystemArgs;

pub(crate) fn run(system: &SystemArgs) -> anyhow::Result<()> {
    outln!(
        "mdsa {} — answers every query with the right specialist\n",
        mdsa::VERSION
    );
    let profile = HardwareDetector::detect();
    let cpu = &profile.cpu;
    outln!(
        "hardware  {} · {} cores ({} threads) · SIMD {} · RAM {} available of {} · {}",
        cpu.brand.as_deref().unwrap_or("unknown CPU"),
        cpu.physical_cores
            .map_or_else(|| "?".to_string(), |c| c.to_string()),
        cpu.logical_cores,
        cpu.simd.names().join(" "),
        profile
            .memory
            .available_bytes
            .map_or_else(|| "?".into(), format_bytes),
        profile
            .memory
            .total_bytes
            .map_or_else(|| "?".into(), format_bytes),
        match profile.gpu_probe {
            GpuProbe::NotCompiled => "GPUs not probed (build with --features gpu)".to_string(),
            GpuProbe::Enumerated => format!("{} GPU(s)", profile.gpus.len()),
        },
    );
    let config = system.load()?;
    // What is already here, in the configured cache: the welcome page never downloads.
    let cached_only = ResolveOptions {
        allow_download: false,
        ..config.resolve_options()
    };
    // Where each found model would run, chosen as a load would choose it.
    let budget = MemoryBudget::from_profile(
        &profile,
        &BudgetConfig {
            ram_fraction: config.budget.ram_fraction,
            vram_fraction: config.budget.vram_fraction,
            ram_bytes: config.budget.ram_bytes,
            vram_bytes: config.budget.vram_bytes,
        },
    )?;
    let placement = LocalBackend::new(cached_only.clone()).with_hardware(profile.clone(), budget);
    outln!("\nmodels");
    let mut missing = false;
    for spec in &config.models {
        let found = spec
            .source
            .parse::<ModelRef>()
            .ok()
            .and_then(|r| r.resolve(&cached_only).ok())
            .is_some();
        missing |= !found;
        outln!(
            "  {:<10} {:<9} {:<7} {}  {}",
            spec.id,
            format!("{:?}", spec.role).to_lowercase(),
            spec.quantization.to_string(),
            if found { "found  " } else { "MISSING" },
            spec.source
        );
        if found && spec.backend == mdsa::engine::LOCAL_BACKEND {
            match placement.plan(spec) {
                Ok(plan) => outln!(
                    "  {:<10} runs on {}: {}",
                    "",
                    plan.device,
                    plan.device_reason
                ),
                Err(error) => outln!("  {:<10} cannot run here: {error}", ""),
            }
        }
    }
    let domains = match &config.domains {
        Some(path) => mdsa::domains::DomainRegistry::from_file(path)?,
        None => mdsa::domains::DomainRegistry::builtin(),
    };
    outln!(
        "\ndomains   {} (from {})",
        domains.ids().collect::<Vec<_>>().join(", "),
        domains.origin()
    );
    outln!("\nnext");
    if missing {
        outln!("  cargo xtask fetch-models              fetch the missing models");
    }
    outln!("  mdsa query \"I have a fever and a headache\"   a routed, streamed answer");
    outln!("  mdsa route \"How do I reset my password?\"     the route decision only");
    outln!("  mdsa chat                                   ask question after question");
    outln!("  mdsa domains list                           the domains and their models");
    outln!("  mdsa logs / mdsa metrics                    what earlier requests did");
    outln!("  mdsa --help                                 every command");
    Ok(())
}
