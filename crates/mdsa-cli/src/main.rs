//! The `mdsa` command-line tool.
//!
//! Each subcommand lives in its own module under `commands/`; this file only
//! parses arguments and turns errors into one readable line.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Answer every query with the right specialist: route, load, generate, validate, log.
#[derive(Debug, Parser)]
#[command(name = "mdsa", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show this machine's hardware: CPU, SIMD, memory, GPUs and the memory budget.
    Hw(commands::hw::HwArgs),
    /// Print sentence embeddings of the given texts (the router's encoder by default).
    Embed(commands::embed::EmbedArgs),
    /// Generate text with any supported decoder model (streams to stdout).
    Generate(commands::generate::GenerateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Hw(args) => commands::hw::run(&args),
        Command::Embed(args) => commands::embed::run(&args),
        Command::Generate(args) => commands::generate::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
