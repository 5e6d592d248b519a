//! `mdsa domains list|show|export|from-jsonl`: the domains in use, and new
//! ones built from labelled data.

use std::path::PathBuf;

use anyhow::Context;
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
    /// Build a domains file from labelled queries (your own intents): K
    /// examples per label, the rest written beside it as a held-out set for
    /// `mdsa routes eval` and `mdsa routes fit`.
    FromJsonl(FromJsonlArgs),
}

#[derive(Debug, clap::Args)]
struct FromJsonlArgs {
    /// Labelled queries: one `{"text": "...", "domain": "label"|null}` per line
    /// (`"label"` or `"intent"` may stand for `"domain"`).
    #[arg(value_name = "FILE.jsonl")]
    data: PathBuf,
    /// Examples per label; the rest of each label's queries are held out.
    #[arg(long, short = 'k', value_name = "K")]
    examples: usize,
    /// The domains file to write [default: FILE.ron beside the data].
    #[arg(long, value_name = "FILE.ron")]
    out: Option<PathBuf>,
    /// The held-out queries [default: FILE.heldout.jsonl beside the data].
    #[arg(long, value_name = "FILE.jsonl")]
    heldout: Option<PathBuf>,
    /// Seed of the sampling: the same seed gives the same split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
        DomainsCommand::FromJsonl(args) => from_jsonl(args)?,
    }
    Ok(())
}

fn from_jsonl(args: &FromJsonlArgs) -> anyhow::Result<()> {
    use mdsa::domains::{default_outputs, read_jsonl, split_labelled, write_jsonl};
    let data = read_jsonl(&args.data)?;
    let split = split_labelled(&data, args.examples, args.seed, &args.data)?;
    let (default_ron, default_heldout) = default_outputs(&args.data);
    let out = args.out.clone().unwrap_or(default_ron);
    let heldout = args.heldout.clone().unwrap_or(default_heldout);
    let header = format!(
        "// Built by `mdsa domains from-jsonl {} --examples {} --seed {}`.\n\
         // Held-out queries: {}. Fit the thresholds with `mdsa routes fit`.\n",
        args.data.display(),
        args.examples,
        args.seed,
        heldout.display()
    );
    std::fs::write(&out, header + &split.file.to_ron()?)
        .with_context(|| format!("writing {}", out.display()))?;
    write_jsonl(&heldout, &split.heldout)?;
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["domain", "label", "examples", "held out"]);
    for domain in &split.domains {
        table.add_row([
            domain.id.clone(),
            domain.label.clone(),
            domain.examples.to_string(),
            domain.heldout.to_string(),
        ]);
    }
    outln!("{table}");
    let out_of_domain = split.heldout.iter().filter(|q| q.domain.is_none()).count();
    outln!(
        "{} domains written to {}; {} held-out queries ({out_of_domain} out of domain) to {}",
        split.domains.len(),
        out.display(),
        split.heldout.len(),
        heldout.display()
    );
    outln!(
        "next: mdsa routes eval --domains {} --data {}",
        out.display(),
        heldout.display()
    );
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
