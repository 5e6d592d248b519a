//! `cargo xtask loadtest`: concurrent clients against `mdsa serve`, with
//! throughput, latency percentiles, errors by kind, and a check that the
//! server counted every request the clients got an answer to.
//!
//! Without `--url` it builds the release CLI, starts `mdsa serve` on a free
//! loopback port with a queue as large as the most clients and a long queue
//! timeout (so a correct server never turns a request away), runs the load, and stops the server
//! with SIGTERM. The server's request log goes to `target/loadtest/`, not the
//! user's own. Figures go to the terminal and to `target/loadtest.json`.

mod args;
mod client;
mod server;
pub(crate) mod soak;
mod stats;

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::cmd::{cargo, step, target_dir, workspace_root};
use args::Mode;
pub(crate) use args::{LoadtestArgs, Modes};
use client::Load;
use server::ServerProcess;
use stats::Summary;

/// The queries, drawn round-robin.
const QUERIES: &str = "data/routing/eval.jsonl";

/// Requests (with one token to generate) sent before the runs: enough of
/// the queries that each domain's system prompt is seen twice, which is
/// when the generator keeps it as a prefix.
const WARM_UP_REQUESTS: usize = 24;

/// One (mode, clients) run and its checks.
struct Run {
    mode: Mode,
    clients: usize,
    summary: Summary,
    /// Chat: the server's `mdsa_requests_total` delta over the run.
    server_counted: Option<u64>,
    /// Requests answered to the client but not counted by the server, or the
    /// other way round (chat); requests that got no answer (route).
    lost: u64,
    /// The machine's load average (1 min) as the run started, where known:
    /// other work on the cores shows in the latencies.
    load_before: Option<f64>,
}

impl Run {
    fn failed(&self) -> bool {
        self.summary.error_count() > 0 || self.lost > 0
    }
}

pub(crate) fn run(options: &LoadtestArgs) -> anyhow::Result<()> {
    let queries = client::read_queries(&workspace_root().join(QUERIES))?;
    let agent = client::agent();
    let (url, server) = match &options.url {
        Some(url) => {
            args::ensure_resolves_to_loopback(url)?;
            (url.clone(), None)
        }
        None => {
            let server = start_server(options, &agent)?;
            (server.url.clone(), Some(server))
        }
    };
    // Our own server binds 127.0.0.1; checked all the same.
    args::loopback_base_url(&url)?;
    println!(
        "\nloadtest: {url}, clients {:?}, {:.0} s per run, modes {}, {} queries from {QUERIES}",
        options.clients,
        options.duration.as_secs_f64(),
        options
            .mode
            .modes()
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", "),
        queries.len()
    );
    let measured = measure(options, &url, &queries, &agent);
    let stopped = server.map(ServerProcess::stop).transpose();

    let runs = measured?;
    print_table(&runs);
    let mut problems: Vec<String> = runs
        .iter()
        .filter(|r| r.failed())
        .map(|r| format!("{}/{} clients", r.mode.name(), r.clients))
        .collect();
    match stopped {
        Ok(Some(status)) if !status.success() => {
            problems.push(format!("the server exited with {status} after SIGTERM"));
        }
        Ok(_) => {}
        Err(error) => problems.push(format!("{error:#}")),
    }
    let path = target_dir().join("loadtest.json");
    write_json(&path, options, &url, &runs, &problems)?;
    println!("\nloadtest: figures in {}", path.display());
    if !problems.is_empty() {
        anyhow::bail!("loadtest failed: {}", problems.join("; "));
    }
    println!("loadtest: no errors, no lost requests");
    Ok(())
}

/// Fetches the models, builds the release CLI and starts `mdsa serve`.
fn start_server(options: &LoadtestArgs, agent: &ureq::Agent) -> anyhow::Result<ServerProcess> {
    crate::fetch_models::run(&crate::fetch_models::FetchModelsArgs::default())?;
    let mut build = cargo();
    build.args(["build", "--release", "--package", "mdsa-cli"]);
    step("build", build)?;
    let binary = target_dir()
        .join("release")
        .join(format!("mdsa{}", std::env::consts::EXE_SUFFIX));
    // The server's request log stays in target/, away from the user's own.
    let dir = target_dir().join("loadtest");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("mdsa.ron");
    std::fs::write(&config, "(logging: (file: \"requests.jsonl\"))\n")
        .with_context(|| format!("writing {}", config.display()))?;
    let _ = std::fs::remove_file(dir.join("requests.jsonl"));
    // Running requests take slots; the rest wait in the queue, which holds
    // every client so that a correct server never answers 429.
    let server = ServerProcess::start(
        &binary,
        &config,
        options.max_clients(),
        &dir.join("server.log"),
    )?;
    server.wait_ready(agent)?;
    Ok(server)
}

fn measure(
    options: &LoadtestArgs,
    url: &str,
    queries: &[String],
    agent: &ureq::Agent,
) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for mode in options.mode.modes() {
        let load = Load {
            url,
            mode,
            max_tokens: options.max_tokens,
            queries,
        };
        // Requests first, outside the figures: the first loads the models a
        // first request would otherwise pay for, and the rest let the
        // generator keep each domain's prompt prefix, so that every run
        // (one client or many) meets the server in its steady state.
        let warm_load = Load {
            max_tokens: 1,
            ..load
        };
        for query in queries.iter().take(WARM_UP_REQUESTS) {
            let warm = client::send(agent, &warm_load, query);
            if !matches!(warm.outcome, stats::Outcome::Ok { .. }) {
                anyhow::bail!("{} warm-up request failed: {:?}", mode.name(), warm.outcome);
            }
        }
        for &clients in &options.clients {
            println!(
                "\n==> {} with {clients} client{} for {:.0} s{}",
                mode.name(),
                if clients == 1 { "" } else { "s" },
                options.duration.as_secs_f64(),
                if clients > 1 && !options.ramp_up.is_zero() {
                    format!(" (starting over {:.1} s)", options.ramp_up.as_secs_f64())
                } else {
                    String::new()
                }
            );
            let before = match mode {
                Mode::Chat if !options.foreign => Some(client::server_requests_total(agent, url)?),
                _ => None,
            };
            let load_before = load_average();
            let (samples, wall) = client::run(
                &load,
                clients,
                options.duration,
                options.max_requests,
                options.ramp_up,
            )?;
            let summary = Summary::new(&samples, wall);
            let server_counted = match before {
                Some(before) => {
                    let after = client::server_requests_total(agent, url)?;
                    Some(after.saturating_sub(before))
                }
                None => None,
            };
            let lost = match server_counted {
                Some(counted) => counted.abs_diff(summary.ok as u64),
                None => summary.no_answer as u64,
            };
            let run = Run {
                mode,
                clients,
                summary,
                server_counted,
                lost,
                load_before,
            };
            print_run(&run);
            runs.push(run);
        }
    }
    Ok(runs)
}

/// The 1-minute load average (Linux), to tell a busy machine from a slow server.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_run(run: &Run) {
    let s = &run.summary;
    let check = match run.server_counted {
        Some(counted) => format!("server counted {counted}"),
        None => format!("{} answered", s.requests - s.no_answer),
    };
    let load = run.load_before.map_or(String::new(), |l| {
        format!(" (load average {l:.1} at start)")
    });
    println!(
        "    {} requests in {:.1} s: {} ok, {} errors, {check}, {} lost; {:.1} req/s, p50 {:.0} ms, p99 {:.0} ms{load}",
        s.requests,
        s.wall.as_secs_f64(),
        s.ok,
        s.error_count(),
        run.lost,
        s.throughput(),
        ms(s.latency.p50),
        ms(s.latency.p99)
    );
}

fn print_table(runs: &[Run]) {
    println!(
        "\n{:<6} {:>7} {:>8} {:>6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9}",
        "mode",
        "clients",
        "requests",
        "errors",
        "lost",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "tok/s",
        "ttft p95"
    );
    for run in runs {
        let s = &run.summary;
        let tokens = match run.mode {
            Mode::Chat => format!("{:.1}", s.tokens_per_second()),
            Mode::Route => "-".into(),
        };
        let ttft = s
            .first_token
            .map_or("-".into(), |t| format!("{:.1}", ms(t.p95)));
        println!(
            "{:<6} {:>7} {:>8} {:>6} {:>5} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>7} {:>9}",
            run.mode.name(),
            run.clients,
            s.requests,
            s.error_count(),
            run.lost,
            s.throughput(),
            ms(s.latency.p50),
            ms(s.latency.p95),
            ms(s.latency.p99),
            ms(s.latency.max),
            tokens,
            ttft
        );
    }
    for run in runs {
        for (kind, count) in &run.summary.errors {
            println!("  {}/{}: {count} × {kind}", run.mode.name(), run.clients);
        }
    }
    println!(
        "(latency of successful requests, nearest rank; req/s counts successes over the run's wall time; ttft: the server's time to first token, ms)"
    );
}

fn write_json(
    path: &std::path::Path,
    options: &LoadtestArgs,
    url: &str,
    runs: &[Run],
    problems: &[String],
) -> anyhow::Result<()> {
    let runs: Vec<Value> = runs
        .iter()
        .map(|run| {
            let s = &run.summary;
            json!({
                "mode": run.mode.name(),
                "clients": run.clients,
                "requests": s.requests,
                "ok": s.ok,
                "abstained": s.abstained,
                "errors": s.error_count(),
                "errors_by_kind": s.errors,
                "no_answer": s.no_answer,
                "server_counted": run.server_counted,
                "lost": run.lost,
                "wall_s": s.wall.as_secs_f64(),
                "throughput_rps": s.throughput(),
                "latency_ms": {
                    "p50": ms(s.latency.p50),
                    "p95": ms(s.latency.p95),
                    "p99": ms(s.latency.p99),
                    "max": ms(s.latency.max),
                    "mean": ms(s.latency.mean),
                },
                "time_to_first_token_ms": s.first_token.map(|t| json!({
                    "p50": ms(t.p50),
                    "p95": ms(t.p95),
                    "p99": ms(t.p99),
                    "max": ms(t.max),
                })),
                "completion_tokens": s.completion_tokens,
                "completion_tokens_per_s": (run.mode == Mode::Chat).then(|| s.tokens_per_second()),
                "load_average_at_start": run.load_before,
            })
        })
        .collect();
    let report = json!({
        "url": url,
        "server": if options.url.is_some() { "given (--url)" } else { "spawned: mdsa serve --port 0" },
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "seconds_per_run": options.duration.as_secs_f64(),
        "ramp_up_s": options.ramp_up.as_secs_f64(),
        "max_tokens": options.max_tokens,
        "max_requests_per_run": options.max_requests,
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "runs": runs,
        "problems": problems,
        "passed": problems.is_empty(),
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}
