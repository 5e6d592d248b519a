//! The `mdsa` command-line tool, as a library: the `mdsa` binary is
//! `mdsa_cli::run_with(mdsa_cli::default_backends())`.
//!
//! A model backend of your own plugs in one of two ways:
//!
//! - **A feature of this crate**, for backends that ship with mdsa: the
//!   `remote` feature (on by default) adds mdsa-remote's `openai` backend in
//!   [`default_backends`].
//! - **A `main` of your own**, for any other backend crate: the whole `mdsa`
//!   command line (`query`, `chat`, `serve`, ...) with your backend added.
//!
//! ```no_run
//! use std::process::ExitCode;
//! use std::sync::Arc;
//! # #[derive(Debug)]
//! # struct MyBackend;
//! # impl mdsa::engine::ModelBackend for MyBackend {
//! #     fn name(&self) -> &str { "mine" }
//! #     fn load(&self, _: &mdsa::engine::ModelSpec)
//! #         -> Result<mdsa::engine::LoadedModel, mdsa::engine::ModelError> { todo!() }
//! # }
//!
//! fn main() -> ExitCode {
//!     let mut backends = mdsa_cli::default_backends();
//!     backends.insert(Arc::new(MyBackend)); // specs select it with `backend: "mine"`
//!     mdsa_cli::run_with(backends)
//! }
//! ```
//!
//! Each subcommand lives in its own module under `commands/`; this file only
//! parses arguments, hands the backends down and turns errors into one
//! readable line.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `println!` for command output: a closed stdout (`mdsa ... | head`) becomes
/// an error that ends the command quietly instead of a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

/// `print!` for command output; see [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

mod commands;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mdsa::Backends;

/// Answer every query with the right specialist: route, load, generate, validate, log.
#[derive(Debug, Parser)]
#[command(name = "mdsa", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    system: commands::system::SystemArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show this machine's hardware: CPU, SIMD, memory, GPUs and the memory budget.
    Hw(commands::hw::HwArgs),
    /// Print sentence embeddings of the given texts (the router's encoder by default).
    Embed(commands::embed::EmbedArgs),
    /// Generate text with any supported decoder model (streams to stdout).
    Generate(commands::generate::GenerateArgs),
    /// Answer a query: route it, load its domain's model, stream and validate the answer.
    Query(commands::query::QueryArgs),
    /// Ask question after question, each routed to its specialist.
    Chat(commands::chat::ChatArgs),
    /// Show which domain a query goes to, with every domain's score.
    Route(commands::route::RouteArgs),
    /// Evaluate the router on labelled data, or fit its abstention thresholds.
    Routes(commands::routes::RoutesArgs),
    /// List, show or export the domains.
    Domains(commands::domains::DomainsArgs),
    /// Show the request log, filtered, as a table or JSON/CSV.
    Logs(commands::logs::LogsArgs),
    /// Latency percentiles, throughput and errors from the request log (or Prometheus text).
    Metrics(commands::metrics::MetricsArgs),
    /// Serve the OpenAI-compatible API, Prometheus metrics and the live dashboard.
    Serve(commands::serve::ServeArgs),
    /// Download models from the Hugging Face Hub into the local cache.
    Pull(commands::fetch::PullArgs),
    /// List cached models and the ones the configuration refers to.
    Models(commands::models::ModelsArgs),
    /// Remove a Hub model (or one of its files) from the local cache.
    Rm(commands::fetch::RmArgs),
}

/// The backends this build of the CLI has besides the local one: mdsa-remote's
/// `openai` backend with the `remote` feature (on by default).
pub fn default_backends() -> Backends {
    #[allow(unused_mut)]
    let mut backends = Backends::new();
    // Models whose spec says `backend: "openai"` run on a remote
    // OpenAI-compatible server (vLLM, Ollama, llama.cpp, another mdsa).
    #[cfg(feature = "remote")]
    backends.insert(std::sync::Arc::new(mdsa_remote::RemoteBackend::new()));
    backends
}

/// Runs the `mdsa` command line on this process's arguments with `backends`
/// (see [`default_backends`]): parses them, runs the command, prints an error
/// as one line on stderr. `--help` and `--version` work as in `mdsa`.
pub fn run_with(backends: Backends) -> ExitCode {
    run_from(std::env::args_os(), backends)
}

/// Like [`run_with`], with the arguments given (the first is the program's
/// name, as in `std::env::args_os`).
pub fn run_from<I, T>(args: I, backends: Backends) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut cli = Cli::parse_from(args);
    cli.system.backends = backends;
    let system = &cli.system;
    let result = match cli.command {
        None => commands::welcome::run(system),
        Some(Command::Hw(args)) => commands::hw::run(&args),
        Some(Command::Embed(args)) => commands::embed::run(&args, system),
        Some(Command::Generate(args)) => commands::generate::run(&args, system),
        Some(Command::Pull(args)) => commands::fetch::pull(&args, system),
        Some(Command::Rm(args)) => commands::fetch::rm(&args, system),
        Some(Command::Models(args)) => commands::models::run(&args, system),
        Some(Command::Query(args)) => commands::query::run(&args, system),
        Some(Command::Chat(args)) => commands::chat::run(&args, system),
        Some(Command::Route(args)) => commands::route::run(&args, system),
        Some(Command::Routes(args)) => commands::routes::run(&args, system),
        Some(Command::Domains(args)) => commands::domains::run(&args, system),
        Some(Command::Logs(args)) => commands::logs::run(&args, system),
        Some(Command::Metrics(args)) => commands::metrics::run(&args, system),
        Some(Command::Serve(args)) => commands::serve::run(&args, system),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): what it wanted was written.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The whole context chain on one line, without a backtrace. A cause that its
/// parent's message already quotes (`file: No such file...` over the OS error
/// itself) is not repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if line.contains(&message) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&message);
    }
    line.replace('\n', " ")
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
