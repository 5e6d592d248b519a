//! `mdsa domains list|show|export`: the domains in use.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use super::system::SystemArgs;

/// Arguments of `mdsa domains`.
#[derive(Debug, clap::Args)]
pub(crate) struct DomainsArgs {
    #[command(subcommand)]
    command: DomainsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DomainsCommand {
    /// One line per domain: id, model, keywords, examples.
    List,
    /// One domain in full, as RON.
    Show {
        /// The domain id.
        id: String,
    },
    /// The whole domains file as RON: a starting point for your own.
    Export,
}

pub(crate) fn run(args: &DomainsArgs, system: &SystemArgs) -> anyhow::Result<()> {
    // Listing domains needs no model: read the configuration only.
    match &args.command {
        DomainsCommand::List => {
            let (config, registry) = load(system)?;
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED).set_header([
                "id",
                "name",
                "model",
                "keywords",
                "examples",
                "description",
            ]);
            for domain in registry.iter() {
                table.add_row([
                    domain.id.clone(),
                    domain.name.clone(),
                    registry
                        .model_for(domain)
                        .unwrap_or(&config.default_generator)
                        .to_string(),
                    domain.keywords.len().to_string(),
                    domain.examples.len().to_string(),
                    domain.description.clone(),
                ]);
            }
            outln!("{table}");
            outln!("from {}", registry.origin());
        }
        DomainsCommand::Show { id } => {
            let (_, registry) = load(system)?;
            let domain = registry.require(id)?;
            outln!("{}", mdsa::config::to_ron(domain)?);
        }
        DomainsCommand::Export => {
            let (_, registry) = load(system)?;
            outln!("{}", registry.to_ron()?);
        }
    }
    Ok(())
}

/// The configuration and the domains it uses.
pub(crate) fn load(
    system: &SystemArgs,
) -> anyhow::Result<(mdsa::SystemConfig, mdsa::domains::DomainRegistry)> {
    let config = system.load()?;
    let registry = match &config.domains {
        Some(path) => mdsa::domains::DomainRegistry::from_file(path)?,
        None => mdsa::domains::DomainRegistry::builtin(),
    };
    Ok((config, registry))
}
