//! `cargo xtask bench`: every crate's criterion benches, the server under
//! load, optionally the reference implementations on the same workloads, and
//! a report: `docs/benchmarks.md` with PNG plots in `docs/benchmarks/`.
//!
//! Figures are medians with min–max over criterion's samples (each sample is
//! the mean of many iterations). Comparisons are ratios measured in the same
//! run on the same machine; the raw figures go to `docs/benchmarks/results.json`.

mod criterion;
mod figures;
mod plots;
mod references;
mod report;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use serde_json::Value;

use crate::cmd::{cargo, target_dir, workspace_root};
pub(crate) use criterion::Measurement;

/// Every criterion bench, the server under load and (--compare) the reference
/// implementations: docs/benchmarks.md with plots (release build; not in ci).
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub(crate) struct BenchArgs {
    /// Shorter criterion runs (1 s warm-up, 3 s measurement) and load test.
    #[arg(long)]
    quick: bool,
    /// Also run the references (scripts/reference/bench.py) with each --python.
    #[arg(long)]
    compare: bool,
    /// A python that has some of the references installed (repeatable;
    /// default target/bench-refs/bin/python, made by scripts/reference/install.sh).
    #[arg(long = "python", value_name = "PATH")]
    pythons: Vec<PathBuf>,
    /// Only this criterion bench target (repeatable; default: all of them).
    #[arg(long = "bench", value_name = "NAME")]
    benches: Vec<String>,
    /// Skip the server load test.
    #[arg(long)]
    no_server: bool,
    /// Where benchmarks.md and its plots go (default docs).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// `max_tokens` of the serving runs' chat requests, mdsa's and the anchor's:
/// an answer's length, so that the figure is many sequences decoding together.
/// At the loadtest's default of 16, a request's own prompt (~30 tokens past
/// the cached system prompt) is as much work as its answer.
pub(crate) const SERVING_MAX_TOKENS: u32 = 128;

impl BenchArgs {
    /// Seconds each serving run sends requests (a 128-token answer takes
    /// ~0.5 s for one client).
    fn serving_seconds(&self) -> u64 {
        if self.quick { 15 } else { 30 }
    }

    /// The pythons to run the references with: those given, else the one
    /// scripts/reference/install.sh makes.
    fn pythons(&self) -> Vec<PathBuf> {
        if self.pythons.is_empty() {
            vec![target_dir().join("bench-refs").join("bin").join("python")]
        } else {
            self.pythons.clone()
        }
    }

    /// Where the report goes: `--out`, else the workspace's `docs/`.
    fn out(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| workspace_root().join("docs"))
    }

    /// The command line that asked for this run, for the report.
    fn command_line(&self) -> String {
        let mut command = String::from("cargo xtask bench");
        let mut push = |words: &[&str]| {
            for word in words {
                command.push(' ');
                command.push_str(word);
            }
        };
        if self.quick {
            push(&["--quick"]);
        }
        if self.compare {
            push(&["--compare"]);
        }
        for python in &self.pythons {
            push(&["--python", &python.to_string_lossy()]);
        }
        for bench in &self.benches {
            push(&["--bench", bench]);
        }
        if self.no_server {
            push(&["--no-server"]);
        }
        if let Some(out) = &self.out {
            push(&["--out", &out.to_string_lossy()]);
        }
        command
    }
}

/// Everything one run measured, as the report and the plots read it.
#[derive(Debug, Default)]
pub(crate) struct Results {
    /// Machine, date, commit and command.
    pub(crate) context: BTreeMap<&'static str, String>,
    /// Criterion benchmarks by id.
    pub(crate) criterion: BTreeMap<String, Measurement>,
    /// `mdsa-bench` lines the benches printed (resident bytes, kernels), by id.
    pub(crate) extra: BTreeMap<String, Value>,
    /// `target/loadtest.json`, when the server ran.
    pub(crate) server: Option<Value>,
    /// Reference workloads by name (`encoder`, `llamacpp`, `transformers`):
    /// their JSON, or why they did not run.
    pub(crate) references: BTreeMap<String, Result<Value, String>>,
}

pub(crate) fn run(options: &BenchArgs) -> anyhow::Result<()> {
    let started = SystemTime::now();
    let clock = Instant::now();
    crate::fetch_models::run(&crate::fetch_models::FetchModelsArgs::default())?;
    let mut results = Results {
        context: machine_context(&options.command_line()),
        ..Results::default()
    };
    results.extra = run_criterion(options)?;
    results.extra.extend(run_examples(options)?);
    results.criterion = criterion::read_results(&target_dir().join("criterion"), started)?;
    anyhow::ensure!(
        !results.criterion.is_empty(),
        "criterion wrote no results under {}",
        target_dir().join("criterion").display()
    );
    if !options.no_server {
        crate::loadtest::run(&crate::loadtest::LoadtestArgs {
            clients: vec![1, 8],
            duration: Duration::from_secs(options.serving_seconds()),
            mode: crate::loadtest::Modes::Both,
            max_tokens: SERVING_MAX_TOKENS,
            ..crate::loadtest::LoadtestArgs::default()
        })?;
        let path = target_dir().join("loadtest.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        results.server = Some(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        );
    }
    if options.compare {
        results.references = references::run(&options.pythons());
        if !options.no_server {
            let anchor = references::llama_server(&options.pythons(), options.serving_seconds());
            results.references.insert("llama-server".to_owned(), anchor);
        }
    }
    results.context.insert(
        "duration",
        format!("{:.0} s", clock.elapsed().as_secs_f64()),
    );

    let out = options.out();
    let plots_dir = out.join("benchmarks");
    std::fs::create_dir_all(&plots_dir)
        .with_context(|| format!("creating {}", plots_dir.display()))?;
    let figures = figures::Figures::from(&results);
    let plots = plots::draw(&figures, &plots_dir)?;
    let markdown = report::render(&results, &figures, &plots, &out);
    let path = out.join("benchmarks.md");
    std::fs::write(&path, markdown).with_context(|| format!("writing {}", path.display()))?;
    write_raw(&results, &plots_dir.join("results.json"))?;
    println!("\nbench: report in {}", path.display());
    for line in figures.target_lines() {
        println!("bench: {line}");
    }
    Ok(())
}

/// Runs `cargo bench` over the bench targets (never the libraries' unit
/// tests), echoing its output and collecting the `mdsa-bench {json}` lines
/// benches print on stderr.
fn run_criterion(options: &BenchArgs) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut command = cargo();
    command.args(["bench", "--locked", "--workspace"]);
    // `--bench '*'` is every bench target and nothing else (`--benches` would
    // also build each library's unit tests as benchmarks).
    if options.benches.is_empty() {
        command.args(["--bench", "*"]);
    }
    for name in &options.benches {
        command.args(["--bench", name]);
    }
    command.args(["--", "--noplot"]);
    if options.quick {
        command.args(["--warm-up-time", "1", "--measurement-time", "3"]);
    }
    command.env("HF_HUB_OFFLINE", "1").stderr(Stdio::piped());
    println!("\n==> criterion: {command:?}");
    let mut child = command.spawn().context("could not start cargo bench")?;
    let mut extra = BTreeMap::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("reading cargo bench's output")?;
            eprintln!("{line}");
            if let Some((id, value)) = parse_extra(&line) {
                extra.insert(id, value);
            }
        }
    }
    let status = child.wait().context("waiting for cargo bench")?;
    anyhow::ensure!(status.success(), "cargo bench failed ({status})");
    Ok(extra)
}

/// The measurements that are whole runs rather than criterion samples: a
/// long prompt's prefill and the decode after it, and sequences decoded
/// together against one at a time. Each example prints `mdsa-bench` lines.
fn run_examples(options: &BenchArgs) -> anyhow::Result<BTreeMap<String, Value>> {
    let steps = if options.quick { "16" } else { "64" };
    let mut extra = BTreeMap::new();
    for (example, args) in [
        ("long_context", vec!["4000"]),
        ("batched_decode", vec!["8", steps]),
    ] {
        let mut command = cargo();
        command
            .args([
                "run",
                "--locked",
                "--release",
                "-p",
                "mdsa-models",
                "--example",
                example,
                "--",
            ])
            .args(&args)
            .env("HF_HUB_OFFLINE", "1");
        println!("\n==> example: {command:?}");
        let output = command
            .output()
            .with_context(|| format!("could not run the {example} example"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        print!("{stdout}");
        anyhow::ensure!(
            output.status.success(),
            "the {example} example failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        extra.extend(stdout.lines().filter_map(parse_extra));
    }
    Ok(extra)
}

/// `mdsa-bench {"id": "...", ...}` → (id, the object).
fn parse_extra(line: &str) -> Option<(String, Value)> {
    let json = line.strip_prefix("mdsa-bench ")?;
    let value: Value = serde_json::from_str(json).ok()?;
    let id = value.get("id")?.as_str()?.to_owned();
    Some((id, value))
}

/// The machine as mdsa-hw sees it, and when and how the run was made.
fn machine_context(command: &str) -> BTreeMap<&'static str, String> {
    let hw = mdsa_hw::HardwareDetector::detect();
    let mut context = BTreeMap::new();
    context.insert(
        "cpu",
        hw.cpu.brand.clone().unwrap_or_else(|| hw.cpu.arch.clone()),
    );
    context.insert(
        "cores",
        format!(
            "{} logical ({} physical)",
            hw.cpu.logical_cores,
            hw.cpu
                .physical_cores
                .map_or_else(|| "?".to_owned(), |n| n.to_string())
        ),
    );
    context.insert("simd", hw.cpu.simd.names().join(", "));
    if let Some(total) = hw.memory.total_bytes {
        context.insert("memory", mdsa_hw::format_bytes(total));
    }
    if let Some(os) = hw.os {
        context.insert("os", os);
    }
    if let Some(gpu) = hw.gpus.first() {
        context.insert("gpu", gpu.name.clone());
    }
    context.insert(
        "date",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
    );
    if let Some(load) = crate::loadtest::load_average() {
        context.insert("load_before", format!("{load:.2}"));
    }
    if let Some(commit) = git_commit() {
        context.insert("commit", commit);
    }
    context.insert("command", command.to_owned());
    context
}

fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The raw figures, so a report can be checked against what was measured.
fn write_raw(results: &Results, path: &Path) -> anyhow::Result<()> {
    let criterion: BTreeMap<&str, Value> = results
        .criterion
        .iter()
        .map(|(id, m)| {
            (
                id.as_str(),
                serde_json::json!({
                    "median_s": m.median(),
                    "min_s": m.min(),
                    "max_s": m.max(),
                    "samples_s": m.samples,
                }),
            )
        })
        .collect();
    let references: BTreeMap<&str, Value> = results
        .references
        .iter()
        .map(|(name, r)| {
            let value = match r {
                Ok(v) => v.clone(),
                Err(why) => serde_json::json!({ "not_run": why }),
            };
            (name.as_str(), value)
        })
        .collect();
    let raw = serde_json::json!({
        "context": results.context,
        "criterion": criterion,
        "extra": results.extra,
        "server": results.server,
        "references": references,
    });
    let text = serde_json::to_string_pretty(&raw)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        match crate::tests::parse(&[&["bench"], args].concat())?.task {
            Some(crate::Task::Bench(args)) => Ok(args),
            other => panic!("not bench: {other:?}"),
        }
    }

    #[test]
    fn parses_options_and_rejects_unknown_ones() -> anyhow::Result<()> {
        let defaults = parse(&[])?;
        assert_eq!(defaults, BenchArgs::default());
        assert!(!defaults.quick && !defaults.no_server && !defaults.compare);
        assert_eq!(
            defaults.pythons(),
            [target_dir().join("bench-refs/bin/python")]
        );
        assert_eq!(defaults.out(), workspace_root().join("docs"));
        assert_eq!(defaults.command_line(), "cargo xtask bench");

        let options = parse(&[
            "--quick",
            "--bench",
            "encoder",
            "--python",
            "/p",
            "--no-server",
            "--python=/q",
            "--out",
            "/tmp/report",
        ])?;
        assert!(options.quick && options.no_server && !options.compare);
        assert_eq!(options.benches, ["encoder"]);
        assert_eq!(
            options.pythons(),
            [PathBuf::from("/p"), PathBuf::from("/q")]
        );
        assert_eq!(options.out(), PathBuf::from("/tmp/report"));
        assert_eq!(
            options.command_line(),
            "cargo xtask bench --quick --python /p --python /q --bench encoder --no-server --out /tmp/report"
        );
        let error = parse(&["--fast"]).err().context("should fail")?;
        assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(error.to_string().contains("--fast"));
        let error = parse(&["--python"]).err().context("should fail")?;
        assert_eq!(error.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(error.to_string().contains("--python"));
        Ok(())
    }

    #[test]
    fn reads_extra_lines_and_ignores_other_output() {
        let (id, value) =
            parse_extra(r#"mdsa-bench {"id": "decoder/x/resident_bytes", "value": 12}"#)
                .expect("an extra line");
        assert_eq!(id, "decoder/x/resident_bytes");
        assert_eq!(value["value"], 12);
        assert!(parse_extra("Benchmarking decoder/x: Warming up").is_none());
        assert!(parse_extra("mdsa-bench {not json").is_none());
    }
}
