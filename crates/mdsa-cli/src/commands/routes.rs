//! `mdsa routes eval|fit`: measure the router on labelled data, and choose its
//! abstention thresholds.

use std::path::PathBuf;

use anyhow::Context;
use mdsa::domains::write_thresholds;
use mdsa::domains::{FitReport, evaluate, fit, read_jsonl};

use super::system::SystemArgs;

/// Arguments of `mdsa routes`.
#[derive(Debug, clap::Args)]
pub(crate) struct RoutesArgs {
    #[command(subcommand)]
    command: RoutesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RoutesCommand {
    /// Accuracy, per-domain precision/recall/F1, confusion matrix, abstention
    /// and latency on a labelled JSONL file.
    Eval(EvalArgs),
    /// Choose the abstention thresholds on a labelled JSONL file and write them
    /// into the domains file.
    Fit(FitArgs),
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// Labelled queries: one `{"text": "...", "domain": "finance"|null}` per line.
    #[arg(long, value_name = "FILE.jsonl")]
    data: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct FitArgs {
    /// Labelled queries: one `{"text": "...", "domain": "finance"|null}` per line.
    #[arg(long, value_name = "FILE.jsonl")]
    data: PathBuf,
    /// Show the thresholds without writing them.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &RoutesArgs, system: &SystemArgs) -> anyhow::Result<()> {
    match &args.command {
        RoutesCommand::Eval(args) => eval(args, system),
        RoutesCommand::Fit(args) => fit_command(args, system),
    }
}

fn eval(args: &EvalArgs, system: &SystemArgs) -> anyhow::Result<()> {
    let data = read_jsonl(&args.data)?;
    let mdsa = system.build()?;
    let report = mdsa.with_router(|router| evaluate(router, &data))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!("{}", report.render_table());
    }
    Ok(())
}

fn fit_command(args: &FitArgs, system: &SystemArgs) -> anyhow::Result<()> {
    let data = read_jsonl(&args.data)?;
    let config = system.load()?;
    // The built-in domains live in the binary; thresholds need a file to go to.
    let target = config.domains.clone().context(
        "`routes fit` writes the thresholds into a domains file: pass --domains FILE \
         (start from the built-ins with `mdsa domains export > domains.ron`)",
    )?;
    let mdsa = system.build()?;
    let report: FitReport = mdsa.with_router(|router| fit(router, &data))?;
    let written = if args.dry_run {
        false
    } else {
        write_thresholds(&target, report.thresholds)?
    };
    if args.json {
        let value = serde_json::json!({ "fit": report, "file": target, "written": written });
        outln!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        outln!("{report}");
        if written {
            outln!("thresholds written to {}", target.display());
        } else if !args.dry_run {
            outln!("{} already has these thresholds", target.display());
        }
    }
    Ok(())
}
