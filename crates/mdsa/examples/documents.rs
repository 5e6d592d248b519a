//! A document analysis pipeline: a folder of notes in, a report out.
//!
//! Shows: batch routing ([`Mdsa::route_batch`]) of every paragraph of every
//! `.txt` and `.md` file in a folder; a question chosen by the paragraph's
//! domain (finance: amounts and rates; medical: symptoms and treatments; ...)
//! answered by that domain's model ([`QueryOptions::domain`] keeps the
//! router's choice); a JSON and a CSV report with one row per paragraph; and
//! a summary read back from mdsa's own request log and metrics (requests per
//! domain, p50/p95 latency, tokens).
//!
//! ```sh
//! # the sample folder beside this file, reports in ./documents-report/
//! cargo run -p mdsa --example documents
//! # your own notes, short answers
//! cargo run -p mdsa --example documents -- path/to/notes --out /tmp/report --max-tokens 32
//! ```
//!
//! The models are the ones `cargo xtask fetch-models` puts in the Hugging
//! Face cache (MiniLM routes, SmolLM2 answers).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mdsa::monitor::{LogFilter, RequestStatus};
use mdsa::{Mdsa, Outcome, QueryOptions};
use serde::Serialize;

/// Paragraphs shorter than this (headings, signatures) are not analysed.
const MIN_CHUNK_CHARS: usize = 40;

/// One report row: a paragraph, where it went and what the model said.
#[derive(Debug, Serialize)]
struct Row {
    file: String,
    /// The paragraph's number within its file, from 1.
    chunk: usize,
    chars: usize,
    /// The domain that answered, or `none` when the router abstained.
    domain: String,
    confidence: f32,
    question: String,
    answer: String,
    outcome: String,
    tokens_out: usize,
    total_ms: f64,
    request_id: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let chunks = read_chunks(&args.folder)?;
    eprintln!(
        "{} paragraphs in {}; loading the router...",
        chunks.len(),
        args.folder.display()
    );
    let mdsa = Mdsa::builder()
        .build()
        .context("starting mdsa (run `cargo xtask fetch-models` first)")?;

    // Route everything first: the encoder embeds the paragraphs in batches.
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    let decisions = mdsa.route_batch(&texts)?;

    let mut rows = Vec::with_capacity(chunks.len());
    for (chunk, decision) in chunks.iter().zip(decisions) {
        let label = format!("{}#{}", chunk.file, chunk.index);
        let Some(domain) = decision.domain else {
            println!(
                "{label}: no domain fits (confidence {:.2})",
                decision.confidence
            );
            rows.push(Row {
                file: chunk.file.clone(),
                chunk: chunk.index,
                chars: chunk.text.chars().count(),
                domain: "none".into(),
                confidence: decision.confidence,
                question: String::new(),
                answer: String::new(),
                outcome: "abstained".into(),
                tokens_out: 0,
                total_ms: 0.0,
                request_id: String::new(),
            });
            continue;
        };
        let question = question_for(&domain);
        let options = QueryOptions {
            // Answer in the domain the paragraph was routed to, not the
            // domain of the question wrapped around it.
            domain: Some(domain.clone()),
            max_tokens: Some(args.max_tokens),
            ..QueryOptions::default()
        };
        let query = format!("{question}\n\nText:\n{}", chunk.text);
        let response = mdsa
            .query_with(&query, &options, &mut |_| ControlFlow::Continue(()))
            .with_context(|| format!("answering {label}"))?;
        println!(
            "{label}: {domain} ({:.2}) {}",
            decision.confidence,
            outcome_name(response.outcome)
        );
        rows.push(Row {
            file: chunk.file.clone(),
            chunk: chunk.index,
            chars: chunk.text.chars().count(),
            domain,
            confidence: decision.confidence,
            question: question.to_string(),
            answer: response.text.trim().to_string(),
            outcome: outcome_name(response.outcome).into(),
            tokens_out: response.usage.completion_tokens,
            total_ms: response.timings.total.as_secs_f64() * 1e3,
            request_id: response.request_id,
        });
    }

    write_reports(&args.out, &rows)?;
    print_summary(&mdsa, rows.len());
    Ok(())
}

/// The question each domain's model is asked about a paragraph.
fn question_for(domain: &str) -> &'static str {
    match domain {
        "finance" => "What amounts, rates or dates are mentioned, and what do they mean?",
        "medical" => "What symptoms, conditions or treatments are mentioned?",
        "support" => "What does the customer want, and what should support do next?",
        "technical" => "What is the technical problem and its most likely cause?",
        _ => "Summarise this text in one sentence.",
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Answered => "answered",
        Outcome::Abstained => "abstained",
        Outcome::InvalidAnswer => "invalid_answer",
        Outcome::Cancelled => "cancelled",
    }
}

/// A paragraph of a file.
struct Chunk {
    file: String,
    index: usize,
    text: String,
}

/// The paragraphs (blank-line separated, lines joined) of the folder's
/// `.txt` and `.md` files, in file name order.
fn read_chunks(folder: &Path) -> anyhow::Result<Vec<Chunk>> {
    let entries = std::fs::read_dir(folder)
        .with_context(|| format!("cannot read the folder {}", folder.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", folder.display()))?
            .path();
        let is_text = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("txt") || e.eq_ignore_ascii_case("md"));
        if is_text && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut chunks = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading {} (expected UTF-8 text)", path.display()))?;
        let file = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let paragraphs = text
            .split("\n\n")
            .map(|p| {
                p.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|p| p.chars().count() >= MIN_CHUNK_CHARS);
        for (i, paragraph) in paragraphs.enumerate() {
            chunks.push(Chunk {
                file: file.clone(),
                index: i + 1,
                text: paragraph,
            });
        }
    }
    if chunks.is_empty() {
        bail!(
            "no paragraphs to analyse in {}: expected .txt or .md files with paragraphs of at least {MIN_CHUNK_CHARS} characters",
            folder.display()
        );
    }
    Ok(chunks)
}

/// `report.json` (an array of rows) and `report.csv` (a header and a line per row).
fn write_reports(out: &Path, rows: &[Row]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json_path = out.join("report.json");
    let json = serde_json::to_string_pretty(rows)?;
    std::fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;
    let csv_path = out.join("report.csv");
    let mut csv = csv::Writer::from_path(&csv_path)
        .with_context(|| format!("writing {}", csv_path.display()))?;
    for row in rows {
        csv.serialize(row)?;
    }
    csv.flush()?;
    println!(
        "\nreport: {} and {} ({} rows)",
        json_path.display(),
        csv_path.display(),
        rows.len()
    );
    Ok(())
}

/// What the request log and the metrics say about the run.
fn print_summary(mdsa: &Mdsa, chunks: usize) {
    let records = mdsa.logger().query(&LogFilter::new());
    let mut statuses: BTreeMap<RequestStatus, usize> = BTreeMap::new();
    for record in &records {
        *statuses.entry(record.status).or_default() += 1;
    }
    let statuses: Vec<String> = statuses
        .iter()
        .map(|(status, n)| format!("{n} {}", status.as_str()))
        .collect();
    println!(
        "chunks: {chunks}; request log: {} requests ({})",
        records.len(),
        statuses.join(", ")
    );

    let snapshot = mdsa.metrics().snapshot();
    println!(
        "{:<10} {:>8} {:>9} {:>9} {:>10} {:>11}",
        "domain", "requests", "p50 ms", "p95 ms", "tokens in", "tokens out"
    );
    for (domain, group) in snapshot
        .per_domain
        .iter()
        .chain([(&"all".to_string(), &snapshot.total)])
    {
        println!(
            "{domain:<10} {:>8} {:>9.0} {:>9.0} {:>10} {:>11}",
            group.requests,
            group.latency.p50_ms,
            group.latency.p95_ms,
            group.tokens_in,
            group.tokens_out
        );
    }
}

/// Command-line arguments.
struct Args {
    folder: PathBuf,
    out: PathBuf,
    max_tokens: usize,
}

impl Args {
    const USAGE: &str = "usage: documents [FOLDER] [--out DIR] [--max-tokens N]";

    fn parse() -> anyhow::Result<Self> {
        let mut args = Self {
            // The sample notes committed beside this example.
            folder: Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/documents-sample"),
            out: PathBuf::from("documents-report"),
            max_tokens: 64,
        };
        let mut argv = std::env::args().skip(1);
        let mut folder = None;
        while let Some(arg) = argv.next() {
            match arg.as_str() {
                "--out" => args.out = argv.next().context("--out needs a folder")?.into(),
                "--max-tokens" => {
                    let value = argv.next().context("--max-tokens needs a number")?;
                    args.max_tokens = value.parse().ok().filter(|&n| n > 0).with_context(|| {
                        format!("--max-tokens: expected a positive number, found {value:?}")
                    })?;
                }
                "-h" | "--help" => {
                    println!("{}", Self::USAGE);
                    std::process::exit(0);
                }
                flag if flag.starts_with('-') => bail!("unknown option {flag:?}\n{}", Self::USAGE),
                path if folder.is_none() => folder = Some(PathBuf::from(path)),
                extra => bail!("unexpected argument {extra:?}\n{}", Self::USAGE),
            }
        }
        if let Some(folder) = folder {
            args.folder = folder;
        }
        Ok(args)
    }
}
