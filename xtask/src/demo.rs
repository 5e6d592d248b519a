//! `cargo xtask demo [PROMPT]`: the main job on a fresh machine in one command.
//!
//! Fetches the project's models (a no-op once cached), then runs the release
//! `mdsa query` on them: the query is routed to its domain, that domain's model
//! streams the answer, and the answer is validated and logged.

use crate::cmd::{cargo, step};

// The product's own example query: it should go to the medical domain.
const DEFAULT_PROMPT: &str = "I have a fever and a headache. What should I do?";

/// Fetch the models and stream an answer from them (release build).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub(crate) struct DemoArgs {
    /// The question (words given apart are joined with spaces; default: a
    /// medical question).
    #[arg(value_name = "PROMPT", trailing_var_arg = true)]
    prompt: Vec<String>,
}

impl DemoArgs {
    /// The words given, else the product's own example query.
    fn prompt(&self) -> String {
        if self.prompt.is_empty() {
            DEFAULT_PROMPT.to_string()
        } else {
            self.prompt.join(" ")
        }
    }
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let prompt = args.prompt();
    crate::fetch_models::run(&crate::fetch_models::FetchModelsArgs::default())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<DemoArgs, clap::Error> {
        match crate::tests::parse(&[&["demo"], args].concat())?.task {
            Some(crate::Task::Demo(args)) => Ok(args),
            other => panic!("not demo: {other:?}"),
        }
    }

    #[test]
    fn the_prompt_is_the_words_given_or_the_example_query() {
        assert_eq!(parse(&[]).unwrap().prompt(), DEFAULT_PROMPT);
        assert_eq!(
            parse(&["What is an index fund?"]).unwrap().prompt(),
            "What is an index fund?"
        );
        assert_eq!(
            parse(&["is", "-5", "a", "number?"]).unwrap().prompt(),
            "is -5 a number?"
        );
    }
}
