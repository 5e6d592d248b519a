//! `mdsa logs`: the request log, filtered, as a table or exported.

use std::path::PathBuf;

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use mdsa::monitor::{
    ExportFormat, LogFilter, RequestRecord, RequestStatus, read_jsonl_with_rotations, write_records,
};

use super::system::SystemArgs;

/// Arguments of `mdsa logs`.
#[derive(Debug, clap::Args)]
pub(crate) struct LogsArgs {
    /// Only this domain (`none` for abstained requests).
    #[arg(long)]
    domain: Option<String>,
    /// Only this status: completed, failed, abstained, cancelled, rejected.
    #[arg(long)]
    status: Option<RequestStatus>,
    /// Only queries containing this text (redacted queries never match).
    #[arg(long)]
    text: Option<String>,
    /// Only requests since this time (RFC 3339, e.g. 2026-11-26T18:00:00Z).
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// The most recent N requests.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// `table`, or an export format: `json`, `jsonl`, `csv`.
    #[arg(long, default_value = "table")]
    format: String,
    /// The log file to read (default: the configuration's).
    #[arg(long, value_name = "FILE.jsonl")]
    file: Option<PathBuf>,
}

pub(crate) fn run(args: &LogsArgs, system: &SystemArgs) -> anyhow::Result<()> {
    let records = read_log(args.file.as_ref(), system)?;
    let mut filter = LogFilter::new();
    if let Some(domain) = &args.domain {
        filter = filter.domain(domain);
    }
    if let Some(status) = args.status {
        filter = filter.status(status);
    }
    if let Some(text) = &args.text {
        filter = filter.text(text);
    }
    if let Some(since) = args.since {
        filter = filter.since(since);
    }
    let matching: Vec<&RequestRecord> = records.iter().filter(|r| filter.matches(r)).collect();
    let shown = &matching[matching.len().saturating_sub(args.limit)..];
    if args.format == "table" {
        outln!("{}", table(shown));
        eprintln!("{} of {} matching requests", shown.len(), matching.len());
        return Ok(());
    }
    let format: ExportFormat = args
        .format
        .parse()
        .map_err(|e| anyhow::anyhow!("--format: {e}; or `table`"))?;
    write_records(shown.iter().copied(), format, std::io::stdout().lock())?;
    Ok(())
}

/// Every record of the log file, oldest first (none if nothing was logged yet).
pub(crate) fn read_log(
    file: Option<&PathBuf>,
    system: &SystemArgs,
) -> anyhow::Result<Vec<RequestRecord>> {
    let path = match file {
        Some(path) => path.clone(),
        None => system
            .load()?
            .logging
            .file
            .context("no request log file is configured (logging.file)")?,
    };
    if !path.exists() {
        return Ok(Vec::new());
    }
    Ok(read_jsonl_with_rotations(&path)?)
}

fn table(records: &[&RequestRecord]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "time", "id", "domain", "conf", "model", "status", "tokens", "total ms", "query",
    ]);
    for r in records {
        let query = r.query.clone().unwrap_or_else(|| "(redacted)".to_string());
        table.add_row([
            r.timestamp.format("%Y-%m-%d %H:%M:%S").to_string(),
            r.id.clone(),
            r.domain.clone().unwrap_or_default(),
            r.confidence.map_or(String::new(), |c| format!("{c:.2}")),
            r.model.clone().unwrap_or_default(),
            r.status.to_string(),
            format!("{}/{}", r.tokens_in, r.tokens_out),
            format!("{:.0}", r.latency.total().as_secs_f64() * 1e3),
            query.chars().take(60).collect(),
        ]);
    }
    table
}
