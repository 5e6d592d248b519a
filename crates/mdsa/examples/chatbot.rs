//! A multi-domain chatbot over the `mdsa` facade.
//!
//! Shows: one [`Mdsa`] answering a conversation turn by turn; each turn is
//! routed on its own (so a chat can move from finance to medicine), the
//! domain and the router's confidence are printed before the answer, and the
//! answer streams token by token through [`Mdsa::query_with`]. Every session
//! keeps its own history, passed back as [`QueryOptions::history`] so the
//! model sees the earlier turns.
//!
//! ```sh
//! cargo run -p mdsa --example chatbot                    # interactive
//! cargo run -p mdsa --example chatbot -- --max-tokens 48 # shorter answers
//! printf 'What is an index fund?\n/session bob\nI have a fever and a headache\n/quit\n' \
//!     | cargo run -q -p mdsa --example chatbot -- --max-tokens 32
//! ```
//!
//! Commands: `/session NAME` switches to (or starts) a session, `/reset`
//! forgets the current session's history, `/quit` (or end of input) leaves.
//! The models are the ones `cargo xtask fetch-models` puts in the Hugging
//! Face cache (MiniLM routes, SmolLM2 answers).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;

use anyhow::{Context, bail};
use mdsa::engine::ChatMessage;
use mdsa::{Mdsa, Outcome, QueryEvent, QueryOptions};

/// Earlier messages sent with each turn: enough for follow-up questions,
/// little enough to stay well inside a small model's context.
const HISTORY_MESSAGES: usize = 8;

fn main() -> anyhow::Result<()> {
    let max_tokens = parse_args()?;
    let interactive = std::io::stdin().is_terminal();
    eprintln!("loading the router...");
    let mdsa = Mdsa::builder()
        .build()
        .context("starting mdsa (run `cargo xtask fetch-models` first)")?;
    eprintln!(
        "domains: {}. Commands: /session NAME, /reset, /quit",
        mdsa.domain_ids().join(", ")
    );

    let mut sessions: BTreeMap<String, Vec<ChatMessage>> = BTreeMap::new();
    let mut current = "default".to_string();
    let mut stdout = std::io::stdout();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            print!("[{current}] you> ");
            stdout.flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let line = line.trim();
        if !interactive && !line.is_empty() {
            // Piped input: echo it so the transcript reads as a conversation.
            println!("[{current}] you> {line}");
        }
        match line
            .split_once(' ')
            .map_or((line, ""), |(c, a)| (c, a.trim()))
        {
            ("", _) => continue,
            ("/quit" | "/exit", _) => break,
            ("/reset", _) => {
                sessions.remove(&current);
                println!("(session {current}: history cleared)");
            }
            ("/session", "") => println!("(usage: /session NAME)"),
            ("/session", name) => {
                current = name.to_string();
                let turns = sessions.get(&current).map_or(0, |h| h.len() / 2);
                println!("(session {current}: {turns} earlier turns)");
            }
            (command, _) if command.starts_with('/') => {
                println!("(unknown command {command}; try /session NAME, /reset, /quit)");
            }
            _ => {
                let history = sessions.entry(current.clone()).or_default();
                if let Err(error) = turn(&mdsa, line, history, max_tokens) {
                    // One failed turn (a model error, a timeout) should not end the chat.
                    eprintln!("error: {error:#}");
                }
            }
        }
    }
    Ok(())
}

/// Answers one user turn, streaming it, and records it in `history` when it
/// was answered.
fn turn(
    mdsa: &Mdsa,
    query: &str,
    history: &mut Vec<ChatMessage>,
    max_tokens: Option<usize>,
) -> anyhow::Result<()> {
    let options = QueryOptions {
        history: history[history.len().saturating_sub(HISTORY_MESSAGES)..].to_vec(),
        max_tokens,
        ..QueryOptions::default()
    };
    let mut stdout = std::io::stdout();
    let response = mdsa.query_with(query, &options, &mut |event| {
        match event {
            QueryEvent::Routed(decision) => match &decision.domain {
                Some(domain) => print!("{domain} ({:.2})> ", decision.confidence),
                None => print!("none ({:.2})> ", decision.confidence),
            },
            // A retry: what streamed so far failed validation.
            QueryEvent::Attempt { number } if number > 1 => print!(" [retry {number}] "),
            QueryEvent::Text(piece) => print!("{piece}"),
            _ => {}
        }
        // A closed stdout (`| head`) stops the answer instead of failing it.
        match stdout.flush() {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    })?;
    println!();
    match response.outcome {
        Outcome::Answered => {
            println!(
                "   ({} · {} tokens · {:.1} s)",
                response.model.as_deref().unwrap_or("-"),
                response.usage.completion_tokens,
                response.timings.total.as_secs_f64()
            );
            history.push(ChatMessage::user(query));
            history.push(ChatMessage::assistant(response.text));
        }
        Outcome::Abstained => println!(
            "   (no domain fits this well enough: {}; try rephrasing)",
            response.route.explanation.reason
        ),
        Outcome::InvalidAnswer => println!(
            "   (the answer failed validation: {})",
            response
                .verdict
                .as_ref()
                .map_or_else(|| "unknown".to_string(), ToString::to_string)
        ),
        Outcome::Cancelled => println!("   (cancelled)"),
    }
    Ok(())
}

/// `--max-tokens N`, the only option.
fn parse_args() -> anyhow::Result<Option<usize>> {
    let mut args = std::env::args().skip(1);
    let mut max_tokens = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--max-tokens" => {
                let value = args.next().context("--max-tokens needs a number")?;
                let n: usize = value
                    .parse()
                    .with_context(|| format!("--max-tokens: {value:?} is not a number"))?;
                if n == 0 {
                    bail!("--max-tokens must be at least 1");
                }
                max_tokens = Some(n);
            }
            "-h" | "--help" => {
                println!("usage: chatbot [--max-tokens N] < conversation.txt");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; usage: chatbot [--max-tokens N]"),
        }
    }
    Ok(max_tokens)
}
