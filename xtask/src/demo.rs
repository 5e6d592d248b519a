//! `cargo xtask demo [PROMPT]`: the main job on a fresh machine in one command.
//!
//! Fetches the project's models (a no-op once cached), then runs the release
//! `mdsa` binary on them. Until routing lands this streams a chat answer from
//! the default generator; afterwards it becomes `mdsa query`.

use crate::cmd::{cargo, step};

// The product's own example query (a medical question; routing lands with domains).
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
        "generate",
        "--chat",
        "--stats",
    ])
    .arg(prompt);
    step("demo", mdsa)
}
