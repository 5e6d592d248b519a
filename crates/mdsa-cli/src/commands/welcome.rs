//! Bare `mdsa`: what this is, what this machine has, which models are here,
//! which domains route, and what to run next.

use mdsa::engine::{ModelRef, ResolveOptions};
use mdsa::hw::{HardwareDetector, format_bytes};

use super::system::SystemArgs;

pub(crate) fn run(system: &SystemArgs) -> anyhow::Result<()> {
    outln!(
        "mdsa {} — answers every query with the right specialist\n",
        mdsa::VERSION
    );
    let profile = HardwareDetector::detect();
    let cpu = &profile.cpu;
    outln!(
        "hardware  {} · {} cores ({} threads) · SIMD {} · RAM {} available of {} · {} GPU(s)",
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
        profile.gpus.len(),
    );
    let config = system.load()?;
    // What is already here, in the configured cache: the welcome page never downloads.
    let cached_only = ResolveOptions {
        allow_download: false,
        ..config.resolve_options()
    };
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
