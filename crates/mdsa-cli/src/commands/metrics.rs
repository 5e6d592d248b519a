//! `mdsa metrics`: latency percentiles, throughput and error rate, overall and
//! per domain and model, computed from the request log; or Prometheus text.

use std::path::PathBuf;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use mdsa::monitor::{GroupSnapshot, MetricsCollector};

use super::logs::read_log;
use super::system::SystemArgs;

/// Arguments of `mdsa metrics`.
#[derive(Debug, clap::Args)]
pub(crate) struct MetricsArgs {
    /// Print Prometheus text exposition instead of a table.
    #[arg(long, conflicts_with = "json")]
    prometheus: bool,
    /// Print the snapshot as one JSON object.
    #[arg(long)]
    json: bool,
    /// The log file to read (default: the configuration's).
    #[arg(long, value_name = "FILE.jsonl")]
    file: Option<PathBuf>,
}

pub(crate) fn run(args: &MetricsArgs, system: &SystemArgs) -> anyhow::Result<()> {
    let records = read_log(args.file.as_ref(), system)?;
    let metrics = MetricsCollector::default();
    for record in &records {
        metrics.record_request(record);
    }
    if args.prometheus {
        out!("{}", metrics.encode_prometheus()?);
        return Ok(());
    }
    let snapshot = metrics.snapshot();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&snapshot)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "group",
        "requests",
        "errors",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "ttft p50 ms",
        "tokens in/out",
    ]);
    let mut row = |name: String, g: &GroupSnapshot| {
        table.add_row([
            name,
            g.requests.to_string(),
            format!("{:.1}%", g.error_rate * 100.0),
            format!("{:.0}", g.latency.p50_ms),
            format!("{:.0}", g.latency.p95_ms),
            format!("{:.0}", g.latency.p99_ms),
            format!("{:.0}", g.time_to_first_token.p50_ms),
            format!("{}/{}", g.tokens_in, g.tokens_out),
        ]);
    };
    row("all".into(), &snapshot.total);
    for (domain, g) in &snapshot.per_domain {
        row(format!("domain {domain}"), g);
    }
    for (model, g) in &snapshot.per_model {
        row(format!("model {model}"), g);
    }
    outln!("{table}");
    eprintln!("from {} logged requests", records.len());
    Ok(())
}
