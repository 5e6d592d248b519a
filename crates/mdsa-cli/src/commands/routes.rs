//! `mdsa routes eval|fit|tune`: measure the router on labelled data, choose
//! its abstention thresholds, and fine-tune its encoder on the domains' examples.

use std::path::PathBuf;

use anyhow::Context;
use mdsa::domains::write_thresholds;
use mdsa::domains::{FitReport, evaluate, read_jsonl};

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
    /// Fine-tune the router's encoder on the domains' own examples (a share
    /// held out to measure and stop on), write it as a model directory and
    /// point the domains file at it.
    Tune(TuneArgs),
}

#[derive(Debug, clap::Args)]
struct TuneArgs {
    /// Where the tuned model goes [default: DOMAINS-encoder beside the domains file].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Most passes over the examples.
    #[arg(long, default_value_t = mdsa_tune::TuneOptions::default().epochs)]
    epochs: usize,
    /// Examples per step.
    #[arg(long, default_value_t = mdsa_tune::TuneOptions::default().batch_size)]
    batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = mdsa_tune::TuneOptions::default().learning_rate)]
    learning_rate: f64,
    /// Share of each domain's examples held out to measure and stop on.
    #[arg(long, default_value_t = mdsa_tune::TuneOptions::default().heldout_share)]
    heldout_share: f32,
    /// Seed of the split and the batches: the same seed gives the same model.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the model but leave the domains file as it is.
    #[arg(long)]
    no_write: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
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
    /// Also give a domain its own min_score where that raises macro F1 (a
    /// domain whose scores sit apart from the others').
    #[arg(long)]
    per_domain: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &RoutesArgs, system: &SystemArgs) -> anyhow::Result<()> {
    match &args.command {
        RoutesCommand::Eval(args) => eval(args, system),
        RoutesCommand::Fit(args) => fit_command(args, system),
        RoutesCommand::Tune(args) => tune_command(args, system),
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
    let report: FitReport =
        mdsa.with_router(|router| mdsa::domains::fit_with(router, &data, args.per_domain))?;
    let written = if args.dry_run {
        false
    } else {
        // A fit with one threshold for all clears the domains' own.
        let own = mdsa::domains::write_domain_min_scores(&target, &report.per_domain)?;
        write_thresholds(&target, report.thresholds)? && own
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

fn tune_command(args: &TuneArgs, system: &SystemArgs) -> anyhow::Result<()> {
    use mdsa::engine::{ModelRef, ResolvedModel};
    use mdsa_tune::{LabelledText, TuneEvent, TuneOptions, tune};

    let config = system.load()?;
    let (_, registry) = super::domains::load(system)?;
    let spec = config
        .models
        .iter()
        .find(|m| m.id == config.encoder)
        .with_context(|| {
            format!(
                "the router's encoder {:?} is not among the models",
                config.encoder
            )
        })?;
    // What the router uses: the domains file's own encoder first.
    let source = registry
        .router_config()
        .encoder
        .clone()
        .unwrap_or_else(|| spec.source.clone());
    let model: ModelRef = source
        .parse()
        .with_context(|| format!("the encoder reference {source:?}"))?;
    let dir = match model.resolve(&config.resolve_options())? {
        ResolvedModel::SafetensorsDir { dir, .. } => dir,
        ResolvedModel::Gguf { path } => {
            anyhow::bail!(
                "{} is a GGUF file; tuning needs a safetensors encoder",
                path.display()
            )
        }
    };
    let ids: Vec<&str> = registry.ids().collect();
    let data: Vec<LabelledText> = registry
        .iter()
        .enumerate()
        .flat_map(|(label, domain)| {
            domain.examples.iter().map(move |text| LabelledText {
                text: text.clone(),
                label,
            })
        })
        .collect();
    let out = match (&args.out, &config.domains) {
        (Some(out), _) => out.clone(),
        (None, Some(file)) => file.with_file_name(format!(
            "{}-encoder",
            file.file_stem()
                .map_or("domains".into(), |s| s.to_string_lossy())
        )),
        (None, None) => PathBuf::from("mdsa-encoder"),
    };
    let options = TuneOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        heldout_share: args.heldout_share,
        top_k: registry.router_config().top_k,
        seed: args.seed,
        ..TuneOptions::default()
    };
    let bar = indicatif::ProgressBar::hidden();
    if !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    let mut on_event = |event: TuneEvent| match event {
        TuneEvent::Started {
            train,
            heldout,
            steps_per_epoch,
            epochs,
            before,
        } => {
            bar.set_length((steps_per_epoch * epochs) as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} tuning [{bar:30}] {pos}/{len} steps, {elapsed} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            if !args.json {
                eprintln!(
                    "tuning {} on {} examples of {} domains ({heldout} held out); held-out accuracy before: {before:.3}",
                    dir.display(),
                    train + heldout,
                    ids.len()
                );
            }
        }
        TuneEvent::Step { loss, .. } => {
            bar.inc(1);
            bar.set_message(format!("loss {loss:.3}"));
        }
        TuneEvent::Epoch(epoch) => {
            let line = format!(
                "epoch {}: loss {:.3}, held-out accuracy {:.3}",
                epoch.epoch, epoch.loss, epoch.heldout_accuracy
            );
            if !bar.is_hidden() {
                bar.println(line);
            } else if !args.json {
                eprintln!("{line}");
            }
        }
    };
    let report = tune(&dir, &data, ids.len(), &options, &out, &mut on_event)?;
    bar.finish_and_clear();
    let mut pointed = None;
    if let (Some(written), Some(file), false) = (&report.out, &config.domains, args.no_write) {
        let absolute = std::path::absolute(written)?;
        mdsa::domains::write_encoder(file, &absolute.display().to_string())?;
        pointed = Some(file.clone());
    }
    if args.json {
        let value = serde_json::json!({ "tune": report, "domains_file": pointed });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    outln!(
        "held-out accuracy {:.3} -> {:.3} ({} held-out examples; best epoch {} of {})",
        report.before,
        report.after,
        report.heldout,
        report.best_epoch,
        report.epochs.len()
    );
    match (&report.out, &pointed) {
        (Some(out), Some(file)) => outln!(
            "tuned encoder written to {}; {} now routes with it",
            out.display(),
            file.display()
        ),
        (Some(out), None) => outln!(
            "tuned encoder written to {} (pass --domains FILE to point a domains file at it)",
            out.display()
        ),
        (None, _) => {
            outln!("no epoch beat the base encoder on the held-out examples: nothing written")
        }
    }
    Ok(())
}
