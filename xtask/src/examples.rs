//! `cargo xtask examples`: build every example of the workspace, then run
//! those that finish in seconds on the fetched models (short answers) and
//! check what they print and write. Part of `cargo xtask ci`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail, ensure};

use crate::cmd::{cargo, step, workspace_root};

/// Tokens per answer: the checks are about the plumbing, not the prose.
const MAX_TOKENS: &str = "16";

pub(crate) fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    // One build, so the examples and the mdsa CLI (which the custom backend's
    // example runs) share the feature set of the workspace's tests.
    let mut build = cargo();
    build.args([
        "build",
        "--workspace",
        "--examples",
        "--bin",
        "mdsa",
        "--locked",
    ]);
    step("examples: build", build)?;

    let target = crate::cmd::target_dir().join("debug");

    let chat = run_example(
        &target,
        "chatbot",
        &["--max-tokens", MAX_TOKENS],
        Some(
            "What is an index fund?\n/session bob\nI have a fever and a headache. What should I do?\n\
             /session default\nAnd is it risky?\n/quit\n",
        ),
    )?;
    for expected in [
        "finance (",
        "medical (",
        "(session bob: 0 earlier turns)",
        "(session default: 1 earlier turns)",
    ] {
        ensure!(
            chat.contains(expected),
            "chatbot: no {expected:?} in its output"
        );
    }

    let report = target.join("examples-report");
    let documents = run_example(
        &target,
        "documents",
        &[
            "--out",
            &report.to_string_lossy(),
            "--max-tokens",
            MAX_TOKENS,
        ],
        None,
    )?;
    check_report(&report, &documents)?;

    let custom = run_example(
        &target,
        "custom_domain",
        &["--max-tokens", MAX_TOKENS],
        None,
    )?;
    for expected in ["[domain legal", "[domain cooking"] {
        ensure!(
            custom.contains(expected),
            "custom_domain: no {expected:?} in its output"
        );
    }

    let served = run_example(&target, "embed_axum", &["--self-test"], None)?;
    ensure!(
        served.contains("self-test passed"),
        "embed_axum: the self-test did not pass"
    );

    let mdsa = target.join(format!("mdsa{}", std::env::consts::EXE_SUFFIX));
    let asked = run_example(
        &target,
        "ask",
        &[
            "--mdsa",
            &mdsa.to_string_lossy(),
            "--max-tokens",
            MAX_TOKENS,
        ],
        None,
    )?;
    ensure!(
        asked.contains("[domain technical, model smollm2-cli via backend command, Answered"),
        "ask: the command backend did not answer the routed query"
    );

    // The whole `mdsa` CLI plus the command backend, from a `main` of its own.
    let version = run_example(&target, "mdsa_with_command", &["--version"], None)?;
    ensure!(
        version.starts_with("mdsa "),
        "mdsa_with_command: --version printed {version:?}"
    );
    // A routed query answered through the command backend is the crate's own
    // test (`examples/custom-backend/tests/cli.rs`), run with the workspace tests.

    println!(
        "==> examples: all ran in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `target/debug/examples/NAME` with `args` and `stdin`, echoes its
/// output, and returns its standard output; a non-zero exit is an error.
fn run_example(
    target: &Path,
    name: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<String> {
    let binary = target
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let mut command = Command::new(&binary);
    command
        .args(args)
        .current_dir(workspace_root())
        .env("HF_HUB_OFFLINE", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!(
        "\n==> example {name}: {} {}",
        binary.display(),
        args.join(" ")
    );
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("could not start {}", binary.display()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "example {name} failed ({}) after {seconds:.1} s",
            output.status
        );
    }
    println!("==> example {name}: ok in {seconds:.1} s");
    Ok(stdout)
}

/// The document pipeline's reports: one row per paragraph it announced, in
/// both formats, over more than one domain, each answered.
fn check_report(dir: &Path, output: &str) -> anyhow::Result<()> {
    let chunks: usize = output
        .lines()
        .find_map(|l| l.strip_prefix("chunks: "))
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .context("documents: no `chunks: N` line in its summary")?;
    let json =
        std::fs::read_to_string(dir.join("report.json")).context("documents: report.json")?;
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&json).context("documents: report.json")?;
    ensure!(
        rows.len() == chunks && chunks >= 4,
        "documents: {} JSON rows for {chunks} chunks",
        rows.len()
    );
    let csv = std::fs::read_to_string(dir.join("report.csv")).context("documents: report.csv")?;
    ensure!(
        csv.starts_with("file,chunk,"),
        "documents: report.csv has no header"
    );
    // A row per chunk: answers may span lines, but each row starts with its file and number.
    for row in &rows {
        let start = format!(
            "{},{},",
            row["file"].as_str().unwrap_or_default(),
            row["chunk"]
        );
        ensure!(
            csv.lines().any(|l| l.starts_with(&start)),
            "documents: report.csv has no row {start}..."
        );
    }
    let mut domains: Vec<&str> = rows.iter().filter_map(|r| r["domain"].as_str()).collect();
    domains.sort_unstable();
    domains.dedup();
    ensure!(
        domains.len() >= 2,
        "documents: every chunk went to {domains:?}"
    );
    ensure!(
        rows.iter().all(|r| r["outcome"] == "answered"),
        "documents: not every chunk was answered"
    );
    Ok(())
}
