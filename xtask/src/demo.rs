//! `cargo xtask demo [PROMPT]`: the main job on a fresh machine in one command.
//!
//! Fetches the project's models (a no-op once cached), then runs the release
//! `mdsa query` on them: the query is routed to its domain, that domain's model
//! streams the answer, and the answer is validated and logged.

use crate::cmd::{cargo, step};

// The product's own example query: it should go to the medical domain.
const DEFAULT_PROMPT: &str = "I have a fever and a headache. What should I do?";

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let prompt = if args.is_empty() {
        DEFAULT_PROMPT.to_string()
    } else {
        args.join(" ")
    };
    crate::fetch_models::run(&[])?;
    let mut mdsa = cargo();
    mdsa.args([
        "run",
        "--release",
        "--quiet",
        "--package",
        "mdsa-cli",
        "--",
        "query",
    ])
    .arg(prompt);
    step("demo", mdsa)
}
