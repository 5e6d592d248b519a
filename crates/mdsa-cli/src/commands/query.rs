//! `mdsa query`: one routed, streamed, validated answer.

use std::io::Write;
use std::ops::ControlFlow;

use mdsa::{Mdsa, Outcome, QueryEvent, QueryOptions, QueryResponse};

use super::system::{LoadIndicator, SystemArgs};

/// Arguments of `mdsa query`.
#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    /// Print one JSON object (the whole response) instead of streaming text;
    /// loading and download progress go to stderr, a JSON object per line.
    #[arg(long)]
    json: bool,
    /// Answer in this domain instead of routing.
    #[arg(long)]
    domain: Option<String>,
    /// Cap on generated tokens (below the domain's own limit).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// The question.
    query: String,
}

pub(crate) fn run(args: &QueryArgs, system: &SystemArgs) -> anyhow::Result<()> {
    require_text(&args.query)?;
    let mdsa = system.build()?;
    let options = QueryOptions {
        domain: args.domain.clone(),
        max_tokens: args.max_tokens,
        ..QueryOptions::default()
    };
    if args.json {
        // Progress goes to stderr a JSON object per line; stdout holds only
        // the response.
        let response = mdsa.query_with(&args.query, &options, &mut |event| {
            if let Some(line) = event.load_progress_json() {
                eprintln!("{line}");
            }
            ControlFlow::Continue(())
        })?;
        outln!("{}", serde_json::to_string_pretty(&response)?);
        warn_about_the_log(&mdsa);
        return Ok(());
    }
    let response = stream(&mdsa, &args.query, &options)?;
    report(&response);
    Ok(())
}

/// Refuses an empty query before the models load (mdsa would refuse it after).
pub(crate) fn require_text(query: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !query.trim().is_empty(),
        "the query is empty; expected some text to answer"
    );
    Ok(())
}

/// Streams one answer to stdout with the route and progress on stderr.
pub(crate) fn stream(
    mdsa: &Mdsa,
    query: &str,
    options: &QueryOptions,
) -> anyhow::Result<QueryResponse> {
    let mut stdout = std::io::stdout().lock();
    let mut loading = LoadIndicator::default();
    let mut wrote_text = false;
    let response = mdsa.query_with(query, options, &mut |event| {
        loading.on_event(&event);
        match event {
            QueryEvent::Routed(decision) => match &decision.domain {
                Some(domain) => eprintln!(
                    "→ {domain} (confidence {:.2}){}",
                    decision.confidence,
                    if decision.fallback {
                        ", as fallback"
                    } else {
                        ""
                    }
                ),
                None => eprintln!("→ no domain ({})", decision.explanation.reason),
            },
            QueryEvent::Attempt { number } if number > 1 => {
                eprintln!("\n↻ the answer failed validation; attempt {number}");
            }
            QueryEvent::Text(piece) => {
                wrote_text = true;
                // A closed pipe (e.g. `| head`) cancels instead of failing.
                if stdout
                    .write_all(piece.as_bytes())
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return ControlFlow::Break(());
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    })?;
    if wrote_text {
        let _ = writeln!(stdout);
    }
    warn_about_the_log(mdsa);
    Ok(response)
}

/// One line on stderr: how the answer was judged and what it cost.
pub(crate) fn report(response: &QueryResponse) {
    let t = &response.timings;
    match response.outcome {
        Outcome::Answered => eprintln!(
            "✓ {} · model {} · {} + {} tokens · first token {:.0} ms · total {:.2} s",
            response.domain.as_deref().unwrap_or("-"),
            response.model.as_deref().unwrap_or("-"),
            response.usage.prompt_tokens,
            response.usage.completion_tokens,
            t.first_token.unwrap_or_default().as_secs_f64() * 1e3,
            t.total.as_secs_f64(),
        ),
        Outcome::InvalidAnswer => eprintln!(
            "✗ no attempt passed validation ({} attempts): {}",
            response.attempts,
            response
                .verdict
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
        Outcome::Abstained => eprintln!(
            "mdsa abstained: the query fits none of the domains ({})",
            response.route.explanation.reason
        ),
        Outcome::Cancelled => eprintln!("cancelled"),
    }
}

/// The answer is shown either way; say when it could not be logged.
fn warn_about_the_log(mdsa: &Mdsa) {
    if let Some(error) = mdsa.last_log_error() {
        eprintln!("warning: the request log was not written: {error}");
    }
}
