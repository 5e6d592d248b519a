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
use std::time::{Instant, SystemTime};

use anyhow::Context;
use serde_json::Value;

use crate::cmd::{cargo, target_dir, workspace_root};
pub(crate) use criterion::Measurement;

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench [--quick] [--compare] [--python PATH]... [--bench NAME]...
                         [--no-server] [--out DIR]

  --quick        shorter criterion runs (1 s warm-up, 3 s measurement) and load test
  --compare      also run the references (scripts/reference/bench.py) with each --python
  --python PATH  a python that has some of the references installed (repeatable;
                 default target/bench-refs/bin/python, made by scripts/reference/install.sh)
  --bench NAME   only this criterion bench target (repeatable; default: all of them)
  --no-server    skip the server load test
  --out DIR      where benchmarks.md and its plots go (default docs)";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    quick: bool,
    compare: bool,
    pythons: Vec<PathBuf>,
    benches: Vec<String>,
    server: bool,
    out: PathBuf,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Option<Self>> {
        let mut options = Options {
            quick: false,
            compare: false,
            pythons: Vec::new(),
            benches: Vec::new(),
            server: true,
            out: workspace_root().join("docs"),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
            };
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--compare" => options.compare = true,
                "--no-server" => options.server = false,
                "--python" => options.pythons.push(value("--python")?.into()),
                "--bench" => options.benches.push(value("--bench")?),
                "--out" => options.out = value("--out")?.into(),
                "-h" | "--help" => return Ok(None),
                other => anyhow::bail!("unknown argument {other:?}\n\n{USAGE}"),
            }
        }
        if options.pythons.is_empty() {
            options
                .pythons
                .push(target_dir().join("bench-refs").join("bin").join("python"));
        }
        Ok(Some(options))
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

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let Some(options) = Options::parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let started = SystemTime::now();
    let clock = Instant::now();
    crate::fetch_models::run(&[])?;
    let mut results = Results {
        context: machine_context(args),
        ..Results::default()
    };
    results.extra = run_criterion(&options)?;
    results.criterion = criterion::read_results(&target_dir().join("criterion"), started)?;
    anyhow::ensure!(
        !results.criterion.is_empty(),
        "criterion wrote no results under {}",
        target_dir().join("criterion").display()
    );
    if options.server {
        let seconds = if options.quick { "5" } else { "15" };
        crate::loadtest::run(&[
            "--clients".into(),
            "1,8".into(),
            "--seconds".into(),
            seconds.into(),
            "--mode".into(),
            "both".into(),
        ])?;
        let path = target_dir().join("loadtest.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        results.server = Some(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        );
    }
    if options.compare {
        results.references = references::run(&options.pythons);
    }
    results.context.insert(
        "duration",
        format!("{:.0} s", clock.elapsed().as_secs_f64()),
    );

    let plots_dir = options.out.join("benchmarks");
    std::fs::create_dir_all(&plots_dir)
        .with_context(|| format!("creating {}", plots_dir.display()))?;
    let figures = figures::Figures::from(&results);
    let plots = plots::draw(&figures, &plots_dir)?;
    let markdown = report::render(&results, &figures, &plots, &options.out);
    let path = options.out.join("benchmarks.md");
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
fn run_criterion(options: &Options) -> anyhow::Result<BTreeMap<String, Value>> {
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

/// `mdsa-bench {"id": "...", ...}` → (id, the object).
fn parse_extra(line: &str) -> Option<(String, Value)> {
    let json = line.strip_prefix("mdsa-bench ")?;
    let value: Value = serde_json::from_str(json).ok()?;
    let id = value.get("id")?.as_str()?.to_owned();
    Some((id, value))
}

/// The machine as mdsa-hw sees it, and when and how the run was made.
fn machine_context(args: &[String]) -> BTreeMap<&'static str, String> {
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
    let mut command = String::from("cargo xtask bench");
    for arg in args {
        command.push(' ');
        command.push_str(arg);
    }
    context.insert("command", command);
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

    #[test]
    fn parses_options_and_rejects_unknown_ones() -> anyhow::Result<()> {
        let args: Vec<String> = [
            "--quick",
            "--bench",
            "encoder",
            "--python",
            "/p",
            "--no-server",
        ]
        .map(String::from)
        .to_vec();
        let options = Options::parse(&args)?.context("not help")?;
        assert!(options.quick && !options.server && !options.compare);
        assert_eq!(options.benches, ["encoder"]);
        assert_eq!(options.pythons, [PathBuf::from("/p")]);
        let error = Options::parse(&["--fast".to_owned()])
            .err()
            .context("should fail")?;
        assert!(error.to_string().contains("unknown argument \"--fast\""));
        let error = Options::parse(&["--python".to_owned()])
            .err()
            .context("should fail")?;
        assert!(error.to_string().contains("--python needs a value"));
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
