//! `mdsa chat`: ask question after question; each is routed on its own.

use std::io::{BufRead, Write};

use mdsa::QueryOptions;

use super::query::{report, stream};
use super::system::SystemArgs;

/// Arguments of `mdsa chat`.
#[derive(Debug, clap::Args)]
pub(crate) struct ChatArgs {
    /// Cap on generated tokens per answer.
    #[arg(long)]
    max_tokens: Option<usize>,
}

const HELP: &str = "Type a question and press Enter. /domain ID answers in one domain, \
/auto routes again, /quit (or Ctrl-D) leaves.";

pub(crate) fn run(args: &ChatArgs, system: &SystemArgs) -> anyhow::Result<()> {
    let mdsa = system.build()?;
    eprintln!("mdsa chat · domains: {}", mdsa.domain_ids().join(", "));
    eprintln!("{HELP}");
    let mut options = QueryOptions {
        max_tokens: args.max_tokens,
        ..QueryOptions::default()
    };
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("\nyou> ");
        let _ = std::io::stderr().flush();
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim();
        match line.split_once(' ').unwrap_or((line, "")) {
            ("", _) => continue,
            ("/quit" | "/exit", _) => break,
            ("/help", _) => eprintln!("{HELP}"),
            ("/auto", _) => {
                options.domain = None;
                eprintln!("routing each question again");
            }
            ("/domain", id) if !id.trim().is_empty() => {
                options.domain = Some(id.trim().to_string());
                eprintln!("answering in {}", id.trim());
            }
            _ => match stream(&mdsa, line, &options) {
                Ok(response) => report(&response),
                // One bad turn (an unknown forced domain, a model that failed
                // to load) should not end the conversation.
                Err(error) => eprintln!("error: {error:#}"),
            },
        }
    }
    Ok(())
}
