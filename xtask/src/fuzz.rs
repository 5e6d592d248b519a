//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/`, each for a while,
//! then a table of executions and crashes.
//!
//! `fuzz/` is not a workspace member: it builds on nightly with sanitizers,
//! in its own `fuzz/target`. When it has no lockfile yet it starts from the
//! workspace's, so the fuzzed dependencies are the versions the tests use.
//! cargo-fuzz is installed when missing. A crash stops the run with the
//! input's path and the command that replays it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail, ensure};

use crate::cmd::{cargo, step, workspace_root};

/// A fuzz target and how libFuzzer runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    name: &'static str,
    /// `-max_len`: the longest input libFuzzer makes up; above what the seeds
    /// need, small enough to keep executions fast.
    max_len: usize,
}

/// Every target of `fuzz/Cargo.toml`, in the order they run.
const TARGETS: &[Target] = &[
    Target {
        name: "gguf_reader",
        max_len: 65_536,
    },
    Target {
        name: "safetensors_header",
        max_len: 4_096,
    },
    Target {
        name: "ron_config",
        max_len: 16_384,
    },
    Target {
        name: "chat_template",
        max_len: 4_096,
    },
    Target {
        name: "http_request",
        max_len: 4_096,
    },
];

/// libFuzzer's memory limit per process, in MiB (also its limit on one malloc).
const RSS_LIMIT_MB: u32 = 2_048;
/// An input that runs longer than this many seconds counts as a hang.
const INPUT_TIMEOUT_SECS: u32 = 20;

/// Each cargo-fuzz target (nightly; installs cargo-fuzz if missing) for a
/// while: executions, exec/s, crashes; a crash stops it with the input and the
/// replay command.
///
/// Runs each cargo-fuzz target of fuzz/ (default: all) for N seconds with
/// `cargo +nightly fuzz run`, then prints executions, seconds, exec/s and
/// crashes per target. Needs a nightly toolchain; installs cargo-fuzz when it
/// is missing. The first build compiles the workspace's dependencies with
/// sanitizers (long). Inputs start from fuzz/corpus/TARGET (seed-* files are
/// committed, what libFuzzer adds is not), with fuzz/dicts/TARGET.dict where
/// there is one. libFuzzer's output goes to fuzz/target/xtask-fuzz/TARGET.log.
/// On a crash it stops, names the input under fuzz/artifacts/ and the command
/// that replays it, and exits non-zero.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub(crate) struct FuzzArgs {
    /// How long each target runs, in seconds.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 60,
        value_parser = whole_seconds,
        allow_negative_numbers = true
    )]
    seconds: u64,
    /// The targets to run, in this order (default: all).
    #[arg(value_name = "TARGET", value_parser = target_parser())]
    targets: Vec<Target>,
}

impl FuzzArgs {
    /// The targets given, each once, in the order given; all of them when
    /// none is.
    fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        for target in &self.targets {
            if !targets.contains(target) {
                targets.push(*target);
            }
        }
        if targets.is_empty() {
            targets = TARGETS.to_vec();
        }
        targets
    }
}

/// `--seconds`: a whole number of at least 1.
fn whole_seconds(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "expected a whole number of at least 1, found {text:?}"
        )),
    }
}

/// A target's name, one of [`TARGETS`] (which `--help` lists).
fn target_parser() -> impl clap::builder::TypedValueParser<Value = Target> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(TARGETS.iter().map(|t| t.name)).map(|name| {
        *TARGETS
            .iter()
            .find(|t| t.name == name)
            .expect("the parser only takes the names of TARGETS")
    })
}

/// What libFuzzer said about one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stats {
    /// Inputs executed.
    executions: Option<u64>,
    /// libFuzzer's own average.
    exec_per_sec: Option<u64>,
    /// Edges covered, at the last status line.
    coverage: Option<u64>,
    /// The input that crashed, hung or ran out of memory.
    artifact: Option<String>,
}

impl Stats {
    fn parse(output: &str) -> Self {
        let mut stats = Self::default();
        for line in output.lines() {
            stats.scan(line);
        }
        stats
    }

    /// Takes what one line of libFuzzer's output tells: a status line
    /// (`#1234\tDONE   cov: 56 ft: 78 corp: 9/10b lim: 11 exec/s: 12 rss: 13Mb`),
    /// a final statistic (`stat::number_of_executed_units: 1234`) or where a
    /// failing input was written.
    fn scan(&mut self, line: &str) {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("stat::") {
            let Some((key, value)) = rest.split_once(':') else {
                return;
            };
            let value = value.trim().parse().ok();
            match key {
                "number_of_executed_units" => self.executions = value.or(self.executions),
                "average_exec_per_sec" => self.exec_per_sec = value.or(self.exec_per_sec),
                _ => {}
            }
        } else if let Some(rest) = line.strip_prefix('#')
            && rest.starts_with(|c: char| c.is_ascii_digit())
        {
            let mut words = rest.split_whitespace();
            let Some(Ok(executions)) = words.next().map(str::parse) else {
                return;
            };
            self.executions = Some(executions);
            let fields: Vec<&str> = words.collect();
            let field = |name: &str| {
                let i = fields.iter().position(|w| *w == name)?;
                fields.get(i + 1)?.parse().ok()
            };
            self.exec_per_sec = field("exec/s:").or(self.exec_per_sec);
            self.coverage = field("cov:").or(self.coverage);
        } else if let Some((_, path)) = line.split_once("Test unit written to ") {
            let path = path.trim();
            // A slow input is written too, but fuzzing goes on.
            let slow = Path::new(path)
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("slow-unit-"));
            if !slow {
                self.artifact = Some(path.to_string());
            }
        }
    }
}

/// One target's run, for the table.
struct Run {
    target: Target,
    stats: Stats,
    seconds: f64,
    /// cargo fuzz exited non-zero: a crash, a hang, out of memory, or a
    /// failure to start.
    failed: bool,
}

pub(crate) fn run(options: &FuzzArgs) -> anyhow::Result<()> {
    let fuzz_dir = workspace_root().join("fuzz");
    ensure_cargo_fuzz()?;
    let lockfile = fuzz_dir.join("Cargo.lock");
    if !lockfile.exists() {
        println!(
            "fuzz/Cargo.lock: starting from the workspace's, for the same dependency versions"
        );
        std::fs::copy(workspace_root().join("Cargo.lock"), &lockfile)
            .with_context(|| format!("writing {}", lockfile.display()))?;
    }
    let logs = fuzz_dir.join("target").join("xtask-fuzz");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;

    let mut runs = Vec::new();
    for target in &options.targets() {
        let mut build = nightly_cargo(&fuzz_dir);
        build.args(["fuzz", "build", target.name]);
        step(&format!("build {}", target.name), build)?;

        let log = logs.join(format!("{}.log", target.name));
        let run = fuzz(&fuzz_dir, *target, options.seconds, &log)?;
        let failed = run.failed;
        runs.push(run);
        if failed {
            print_table(&runs);
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            println!("\n--- from {} ---", relative(&log).display());
            for line in failure_lines(&output) {
                println!("{line}");
            }
            let Some(artifact) = runs.last().and_then(|r| r.stats.artifact.clone()) else {
                bail!(
                    "fuzz target {} failed without writing an input; see {}",
                    target.name,
                    log.display()
                );
            };
            bail!(
                "fuzz target {name} found a failing input: {artifact}\n\
                 replay it:   (cd fuzz && cargo +nightly fuzz run {name} {artifact})\n\
                 minimise it: (cd fuzz && cargo +nightly fuzz tmin {name} {artifact})",
                name = target.name,
            );
        }
    }
    print_table(&runs);
    println!("\nfuzz: no crashes");
    Ok(())
}

/// `cargo +nightly` (through rustup) in `fuzz/`.
fn nightly_cargo(fuzz_dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.arg("+nightly").current_dir(fuzz_dir);
    command
}

/// Checks for nightly and installs cargo-fuzz when `cargo fuzz` is missing.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let works = |args: &[&str]| {
        Command::new("cargo")
            .arg("+nightly")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ensure!(
        works(&["--version"]),
        "fuzzing needs a nightly toolchain: rustup toolchain install nightly"
    );
    if !works(&["fuzz", "--version"]) {
        println!(
            "cargo-fuzz is not installed: installing it with `cargo install cargo-fuzz --locked`"
        );
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        step("install cargo-fuzz", install)?;
    }
    Ok(())
}

/// libFuzzer's arguments for a run of `seconds`.
fn libfuzzer_args(target: Target, seconds: u64, dict: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        format!("-max_total_time={seconds}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        format!("-max_len={}", target.max_len),
        format!("-timeout={INPUT_TIMEOUT_SECS}"),
        "-print_final_stats=1".to_string(),
    ];
    if let Some(dict) = dict {
        args.push(format!("-dict={}", dict.display()));
    }
    args
}

/// Fuzzes one target, libFuzzer's output going to `log`.
fn fuzz(fuzz_dir: &Path, target: Target, seconds: u64, log: &Path) -> anyhow::Result<Run> {
    let dict = fuzz_dir.join("dicts").join(format!("{}.dict", target.name));
    let mut command = nightly_cargo(fuzz_dir);
    command
        .args(["fuzz", "run", target.name, "--"])
        .args(libfuzzer_args(
            target,
            seconds,
            Some(dict.as_path()).filter(|d| d.exists()),
        ));
    let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    command
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file));
    println!(
        "\n==> fuzz {}: {seconds} s (output in {})",
        target.name,
        relative(log).display()
    );
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("could not start cargo +nightly fuzz run {}", target.name))?;
    let seconds = started.elapsed().as_secs_f64();
    let output =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let stats = Stats::parse(&output);
    println!(
        "==> fuzz {}: {} executions in {seconds:.0} s{}",
        target.name,
        show(stats.executions),
        if status.success() { "" } else { ", FAILED" }
    );
    Ok(Run {
        target,
        stats,
        seconds,
        failed: !status.success(),
    })
}

fn print_table(runs: &[Run]) {
    println!(
        "\n{:<20} {:>12} {:>8} {:>9} {:>7} {:>8}",
        "target", "executions", "seconds", "exec/s", "cov", "crashes"
    );
    for run in runs {
        println!(
            "{:<20} {:>12} {:>8.0} {:>9} {:>7} {:>8}",
            run.target.name,
            show(run.stats.executions),
            run.seconds,
            show(run.stats.exec_per_sec),
            show(run.stats.coverage),
            u8::from(run.stats.artifact.is_some())
        );
    }
}

fn show(value: Option<u64>) -> String {
    value.map_or_else(|| "?".into(), |v| v.to_string())
}

/// What a failed run's output says went wrong: each panic message, and the
/// sanitizer's or libFuzzer's error and summary lines (out of memory, a
/// timeout, a heap overflow); the last lines when there are none.
fn failure_lines(output: &str) -> Vec<&str> {
    let lines: Vec<&str> = output.lines().collect();
    let mut picked = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.contains("panicked at ") {
            // The message follows, up to the backtrace.
            let end = lines[i + 1..]
                .iter()
                .position(|l| {
                    l.starts_with("stack backtrace:")
                        || l.starts_with("note: ")
                        || l.starts_with("   0: ")
                })
                .map_or(lines.len(), |n| i + 1 + n)
                .min(i + 12);
            picked.extend_from_slice(&lines[i..end]);
            i = end;
            continue;
        }
        let error = line
            .split_once("== ERROR: ")
            .is_some_and(|(pid, _)| pid.starts_with("=="));
        if error || line.starts_with("SUMMARY: ") {
            picked.push(line);
        }
        i += 1;
    }
    if picked.is_empty() {
        picked = lines[lines.len().saturating_sub(40)..].to_vec();
    }
    picked
}

fn relative(path: &Path) -> PathBuf {
    path.strip_prefix(workspace_root())
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<FuzzArgs, clap::Error> {
        match crate::tests::parse(&[&["fuzz"], args].concat())?.task {
            Some(crate::Task::Fuzz(args)) => Ok(args),
            other => panic!("not fuzz: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_every_target_for_a_minute() {
        let options = parse(&[]).unwrap();
        assert_eq!(options.seconds, 60);
        assert_eq!(options.targets(), TARGETS);
    }

    #[test]
    fn seconds_in_both_spellings_and_targets_in_the_order_given() {
        let options =
            parse(&["--seconds", "5", "ron_config", "gguf_reader", "ron_config"]).unwrap();
        assert_eq!(options.seconds, 5);
        let names: Vec<_> = options.targets().iter().map(|t| t.name).collect();
        assert_eq!(names, ["ron_config", "gguf_reader"]);
        let options = parse(&["http_request", "--seconds=7"]).unwrap();
        assert_eq!(options.seconds, 7);
        assert_eq!(options.targets().len(), 1);
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
    }

    #[test]
    fn bad_arguments_are_refused_with_what_was_expected() {
        for (args, expected) in [
            (
                &["--seconds"][..],
                "a value is required for '--seconds <N>'",
            ),
            (&["--seconds", "0"], "at least 1"),
            (&["--seconds", "-5"], "at least 1"),
            (&["--seconds=ten"], "\"ten\""),
            (&["--jobs", "2"], "unexpected argument '--jobs'"),
            (
                &["gguf"],
                "[possible values: gguf_reader, safetensors_header, ron_config, chat_template, http_request]",
            ),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }

    #[test]
    fn every_target_of_the_fuzz_crate_is_known_and_documented() {
        let manifest = std::fs::read_to_string(workspace_root().join("fuzz/Cargo.toml")).unwrap();
        let bins: Vec<&str> = manifest
            .split("[[bin]]")
            .skip(1)
            .filter_map(|bin| {
                let line = bin.lines().find(|l| l.trim_start().starts_with("name"))?;
                line.split('"').nth(1)
            })
            .collect();
        let known: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        assert_eq!(bins, known);
        let help = crate::Cli::command()
            .find_subcommand_mut("fuzz")
            .unwrap()
            .render_long_help()
            .to_string();
        for name in known {
            assert!(help.contains(name), "{name} missing from the help:\n{help}");
        }
    }

    #[test]
    fn final_statistics_and_status_lines_are_read() {
        let output = "\
INFO: Seed: 1234
#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 40Mb
#4096\tpulse  cov: 150 ft: 300 corp: 20/400b lim: 4096 exec/s: 2048 rss: 60Mb
#65536\tNEW    cov: 160 ft: 310 corp: 21/410b lim: 4096 exec/s: 2100 rss: 61Mb L: 12/4096 MS: 1 ChangeBit-
#123456\tDONE   cov: 170 ft: 320 corp: 22/420b lim: 4096 exec/s: 2057 rss: 62Mb
Done 123456 runs in 60 second(s)
stat::number_of_executed_units: 123457
stat::average_exec_per_sec:     2058
stat::new_units_added:          21
";
        let stats = Stats::parse(output);
        assert_eq!(stats.executions, Some(123_457));
        assert_eq!(stats.exec_per_sec, Some(2058));
        assert_eq!(stats.coverage, Some(170));
        assert_eq!(stats.artifact, None);

        // Without -print_final_stats the DONE line is enough.
        let done_only: String = output
            .lines()
            .filter(|l| !l.starts_with("stat::"))
            .map(|l| format!("{l}\n"))
            .collect();
        let stats = Stats::parse(&done_only);
        assert_eq!(stats.executions, Some(123_456));
        assert_eq!(stats.exec_per_sec, Some(2057));
    }

    #[test]
    fn a_crash_names_its_input_and_a_slow_one_does_not() {
        let output = "\
#1000\tpulse  cov: 15 ft: 30 corp: 2/4b lim: 4 exec/s: 500 rss: 60Mb
Slowest unit: 11 s:
artifact_prefix='/w/fuzz/artifacts/ron_config/'; Test unit written to /w/fuzz/artifacts/ron_config/slow-unit-aa
thread '<unnamed>' panicked at src/lib.rs:1:1:
==1== ERROR: libFuzzer: deadly signal
MS: 2 ChangeByte-InsertByte-; base unit: 0000
artifact_prefix='/w/fuzz/artifacts/ron_config/'; Test unit written to /w/fuzz/artifacts/ron_config/crash-0bad
stat::number_of_executed_units: 1017
stat::average_exec_per_sec:     508
";
        let stats = Stats::parse(output);
        assert_eq!(
            stats.artifact.as_deref(),
            Some("/w/fuzz/artifacts/ron_config/crash-0bad")
        );
        assert_eq!(stats.executions, Some(1017));
        // Lines that look alike but are not libFuzzer's.
        let stats = Stats::parse("#include <x>\nstat::odd\n# 12 things\n");
        assert_eq!(stats, Stats::default());
    }

    #[test]
    fn a_failure_is_told_by_its_panic_and_error_lines() {
        let output = "\
INFO: Running with entropic power schedule (0xFF, 100).
#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 40Mb
thread '<unnamed>' (31831) panicked at fuzz_targets/http_request.rs:23:5:
expected a 400, found 500
second line of the message
stack backtrace:
   0: __rustc::rust_begin_unwind
==31831== ERROR: libFuzzer: deadly signal
    #0 0x55 in __sanitizer_print_stack_trace
SUMMARY: libFuzzer: deadly signal
artifact_prefix='/w/a/'; Test unit written to /w/a/crash-1
";
        assert_eq!(
            failure_lines(output),
            [
                "thread '<unnamed>' (31831) panicked at fuzz_targets/http_request.rs:23:5:",
                "expected a 400, found 500",
                "second line of the message",
                "==31831== ERROR: libFuzzer: deadly signal",
                "SUMMARY: libFuzzer: deadly signal",
            ]
        );
        let oom = "#1\tpulse\n==7== ERROR: libFuzzer: out-of-memory (malloc(4294967296))\n";
        assert_eq!(
            failure_lines(oom),
            ["==7== ERROR: libFuzzer: out-of-memory (malloc(4294967296))"]
        );
        // Nothing recognisable: the end of the output.
        let other: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let lines = failure_lines(&other);
        assert_eq!(
            (lines.len(), lines[0], lines[39]),
            (40, "line 10", "line 49")
        );
    }

    #[test]
    fn libfuzzer_gets_time_memory_length_and_dictionary() {
        let target = TARGETS[1];
        let args = libfuzzer_args(target, 30, Some(Path::new("/f/dicts/x.dict")));
        assert_eq!(
            args,
            [
                "-max_total_time=30",
                "-rss_limit_mb=2048",
                "-max_len=4096",
                "-timeout=20",
                "-print_final_stats=1",
                "-dict=/f/dicts/x.dict",
            ]
        );
        assert_eq!(libfuzzer_args(target, 30, None).len(), 5);
    }
}
