//! Project automation, run as `cargo xtask <task>`.
//!
//! Tasks are plain Rust so they behave the same on every machine and in CI:
//! `ci` is the one test command the README gives.

// xtask reports progress to the person or CI log running it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod cmd;
mod demo;
mod dist;
#[cfg(test)]
mod docs;
mod examples;
mod fetch_models;
mod fuzz;
mod gpu_check;
mod loadtest;
mod openai_client;
mod wheel;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// The command line: `cargo xtask <task> [options]`.
#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Project automation for mdsa",
    // A flag given twice takes its last value, as `--seconds 5 --seconds 7`.
    args_override_self = true
)]
struct Cli {
    /// The task; none prints this help.
    #[command(subcommand)]
    task: Option<Task>,
}

/// The tasks. The help of each is the doc comment of its arguments, in its
/// module.
#[derive(Debug, Subcommand)]
enum Task {
    Bench(bench::BenchArgs),
    /// Formatting, clippy (-D warnings), every test and the examples: what CI runs.
    Ci,
    Demo(demo::DemoArgs),
    Dist(dist::DistArgs),
    /// Build every example; run those that finish in seconds and check their output.
    Examples,
    FetchModels(fetch_models::FetchModelsArgs),
    Fuzz(fuzz::FuzzArgs),
    GpuCheck(gpu_check::GpuCheckArgs),
    Loadtest(loadtest::LoadtestArgs),
    Soak(loadtest::soak::SoakArgs),
    /// Build the `mdsa` Python wheel (maturin), install it in a fresh venv and run its tests.
    Wheel(wheel::WheelArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Some(Task::Bench(args)) => bench::run(&args),
        Some(Task::Ci) => ci::run(),
        Some(Task::GpuCheck(args)) => gpu_check::run(&args),
        Some(Task::Demo(args)) => demo::run(&args),
        Some(Task::Dist(args)) => dist::run(&args),
        Some(Task::Examples) => examples::run(),
        Some(Task::FetchModels(args)) => fetch_models::run(&args),
        Some(Task::Fuzz(args)) => fuzz::run(&args),
        Some(Task::Loadtest(args)) => loadtest::run(&args),
        Some(Task::Soak(args)) => loadtest::soak::run(&args),
        Some(Task::Wheel(args)) => wheel::run(&args),
        None => Cli::command().print_help().map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `cargo xtask ARGS...`.
    pub(crate) fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_and_no_task_list_the_tasks_and_unknown_ones_are_refused() {
        assert!(parse(&[]).unwrap().task.is_none());
        for args in [&["help"][..], &["--help"], &["-h"]] {
            let error = parse(args).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{args:?}"
            );
            let help = error.to_string();
            for task in [
                "bench",
                "ci",
                "demo",
                "dist",
                "examples",
                "fetch-models",
                "fuzz",
                "gpu-check",
                "loadtest",
                "soak",
                "wheel",
            ] {
                assert!(help.contains(task), "{args:?}: no {task} in\n{help}");
            }
        }
        let error = parse(&["deploy"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::InvalidSubcommand);
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn ci_and_examples_take_no_arguments() {
        assert!(matches!(parse(&["ci"]).unwrap().task, Some(Task::Ci)));
        assert!(matches!(
            parse(&["examples"]).unwrap().task,
            Some(Task::Examples)
        ));
        assert!(parse(&["ci", "--fast"]).is_err());
        assert!(parse(&["examples", "chatbot"]).is_err());
    }
}
