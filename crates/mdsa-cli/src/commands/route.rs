//! `mdsa route`: the route decision for one query, or one per line of a JSONL file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use mdsa::domains::RouteDecision;

use super::system::SystemArgs;

/// Arguments of `mdsa route`.
#[derive(Debug, clap::Args)]
pub(crate) struct RouteArgs {
    /// Print the decision as one JSON object.
    #[arg(long)]
    json: bool,
    /// Route every `{"text": ...}` line of this JSONL file; prints one JSON
    /// decision per line.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "query")]
    input: Option<PathBuf>,
    /// The query.
    #[arg(required_unless_present = "input")]
    query: Option<String>,
}

pub(crate) fn run(args: &RouteArgs, system: &SystemArgs) -> anyhow::Result<()> {
    let mdsa = system.build()?;
    if let Some(path) = &args.input {
        let data = mdsa::domains::read_jsonl(path)?;
        let texts: Vec<&str> = data.iter().map(|q| q.text.as_str()).collect();
        let decisions = mdsa.route_batch(&texts)?;
        let mut stdout = std::io::stdout().lock();
        for decision in &decisions {
            writeln!(stdout, "{}", serde_json::to_string(decision)?)
                .context("writing to stdout")?;
        }
        return Ok(());
    }
    let query = args.query.as_deref().unwrap_or_default();
    let decision = mdsa.route(query)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&decision)?);
    } else {
        print!("{}", render(&decision));
    }
    Ok(())
}

fn render(decision: &RouteDecision) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "domain: {}  confidence {:.3}{}",
        decision.domain.as_deref().unwrap_or("none (abstained)"),
        decision.confidence,
        if decision.fallback { " (fallback)" } else { "" }
    );
    let _ = writeln!(out, "reason: {}", decision.explanation.reason);
    for score in &decision.scores {
        let _ = writeln!(
            out,
            "  {:<12} score {:.3}  similarity {:.3}  keywords [{}]",
            score.domain,
            score.score,
            score.similarity,
            score.keyword_hits.join(", ")
        );
    }
    for near in &decision.explanation.nearest {
        let _ = writeln!(
            out,
            "  nearest ({}, {:.3}): {}",
            near.domain, near.similarity, near.text
        );
    }
    out
}
