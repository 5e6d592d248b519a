//! `mdsa route`: the route decision for one query, or one per line of a JSONL file.

use std::io::Write;
use std::path::{Path, PathBuf};

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
    if let Some(query) = &args.query {
        super::query::require_text(query)?;
    }
    let mdsa = system.build()?;
    if let Some(path) = &args.input {
        let data = read_texts(path)?;
        let texts: Vec<&str> = data.iter().map(String::as_str).collect();
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
        outln!("{}", serde_json::to_string_pretty(&decision)?);
    } else {
        out!("{}", render(&decision));
    }
    Ok(())
}

/// The `"text"` of every line of a JSONL file; other fields (a `"domain"`
/// label, ids) are ignored, so labelled and unlabelled files both work.
fn read_texts(path: &Path) -> anyhow::Result<Vec<String>> {
    let content =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut texts = Vec::new();
    for (index, line) in content.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), index + 1);
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        match value.get("text") {
            Some(serde_json::Value::String(text)) => texts.push(text.clone()),
            _ => anyhow::bail!("{}: expected an object with a string field \"text\"", at()),
        }
    }
    Ok(texts)
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
