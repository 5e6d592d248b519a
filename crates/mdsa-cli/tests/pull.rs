//! `mdsa pull`, `mdsa rm`, `--offline`, `HF_HUB_OFFLINE` and a download on
//! first use (`mdsa generate`), against the fake Hub of mdsa-engine's tests on
//! loopback. Each run gets an empty `HF_HOME` and `HF_ENDPOINT` pointing at the
//! fake Hub; `HF_HUB_OFFLINE` (set by CI) is removed unless a test sets it.

#[path = "../../mdsa-engine/tests/support/fake_hub.rs"]
mod fake_hub;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fake_hub::{COMMIT, FakeHub, FakeRepo, Fault};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mdsa-models/tests/fixtures/families")
}

/// `mdsa ARGS` with its own `HF_HOME`, the fake Hub, and no token or offline flag
/// from the environment (plus `extra`).
fn mdsa(hub: &FakeHub, home: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mdsa"));
    command
        .args(args)
        .env("HF_HOME", home)
        .env("HF_ENDPOINT", &hub.url)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("MDSA_CONFIG");
    for (name, value) in extra {
        command.env(name, value);
    }
    command.output().expect("the mdsa binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn hub_with_models() -> FakeHub {
    let hub = FakeHub::start();
    let gguf = std::fs::read(fixtures().join("gemma3/model.q8_0.gguf")).unwrap();
    hub.add("tiny/gguf", FakeRepo::one("model.q8_0.gguf", gguf.clone()));
    hub.add(
        "tiny/gemma2",
        FakeRepo::from_dir(&fixtures().join("gemma2/hf")),
    );
    let mut gated = FakeRepo::one("model.q8_0.gguf", gguf);
    gated.token = Some("hf_right".into());
    hub.add("gated/model", gated);
    hub
}

#[test]
fn pull_downloads_with_progress_and_rm_removes() {
    let hub = hub_with_models();
    let home = tempfile::tempdir().unwrap();
    let output = mdsa(
        &hub,
        home.path(),
        &["pull", "tiny/gguf:model.q8_0.gguf", "tiny/gemma2"],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // Not a terminal: one plain line per file, no bars.
    let err = stderr(&output);
    assert!(err.contains("downloading model.q8_0.gguf"), "{err}");
    assert!(err.contains("downloaded model.safetensors"), "{err}");
    let out = stdout(&output);
    assert!(out.contains("tiny/gguf:model.q8_0.gguf"), "{out}");
    let repo = home.path().join("hub/models--tiny--gguf");
    assert!(
        repo.join("snapshots")
            .join(COMMIT)
            .join("model.q8_0.gguf")
            .is_file()
    );

    // Pulling again asks the Hub for metadata only.
    let bodies = hub.body_gets("model.q8_0.gguf").len();
    let again = mdsa(
        &hub,
        home.path(),
        &["pull", "tiny/gguf:model.q8_0.gguf"],
        &[],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(hub.body_gets("model.q8_0.gguf").len(), bodies);

    // `mdsa models` lists both, and the default config's models as missing.
    let models = mdsa(&hub, home.path(), &["models", "--json"], &[]);
    assert!(models.status.success(), "{}", stderr(&models));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&models.stdout).unwrap();
    let row = |reference: &str| {
        rows.iter()
            .find(|r| r["reference"] == reference)
            .unwrap_or_else(|| panic!("{reference} not in {rows:#?}"))
    };
    let gguf = row("tiny/gguf:model.q8_0.gguf");
    assert_eq!(gguf["cached"], true);
    assert_eq!(gguf["format"], "gguf");
    assert_eq!(gguf["architecture"], "gemma3");
    let hf = row("tiny/gemma2");
    assert_eq!(hf["format"], "safetensors");
    assert_eq!(hf["architecture"], "gemma2");
    let encoder = row("sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(encoder["cached"], false);
    assert_eq!(encoder["used_by"][0], "router");
    assert_eq!(
        hub.body_gets("model.q8_0.gguf").len(),
        bodies,
        "models never downloads"
    );

    let rm = mdsa(&hub, home.path(), &["rm", "tiny/gguf:model.q8_0.gguf"], &[]);
    assert!(rm.status.success(), "{}", stderr(&rm));
    assert!(
        !repo
            .join("snapshots")
            .join(COMMIT)
            .join("model.q8_0.gguf")
            .exists()
    );
    let blobs: Vec<_> = std::fs::read_dir(repo.join("blobs"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");

    let rm = mdsa(&hub, home.path(), &["rm", "tiny/gemma2"], &[]);
    assert!(rm.status.success(), "{}", stderr(&rm));
    assert!(!home.path().join("hub/models--tiny--gemma2").exists());
    let missing = mdsa(&hub, home.path(), &["rm", "tiny/gemma2"], &[]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("not in the cache"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn offline_flag_and_hf_hub_offline_fail_in_one_line_without_a_request() {
    let hub = hub_with_models();
    let home = tempfile::tempdir().unwrap();
    for (args, env, says) in [
        (
            &["--offline", "pull", "tiny/gguf:model.q8_0.gguf"][..],
            &[][..],
            "--offline",
        ),
        (
            &["pull", "tiny/gguf:model.q8_0.gguf"][..],
            &[("HF_HUB_OFFLINE", "1")][..],
            "HF_HUB_OFFLINE",
        ),
    ] {
        let output = mdsa(&hub, home.path(), args, env);
        assert!(!output.status.success());
        let err = stderr(&output);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("offline"), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(err.contains("model.q8_0.gguf"), "{err}");
    }
    assert!(hub.log().is_empty(), "{:?}", hub.log());
}

#[test]
fn a_gated_repo_names_hf_token_and_pulls_with_it() {
    let hub = hub_with_models();
    let home = tempfile::tempdir().unwrap();
    let reference = "gated/model:model.q8_0.gguf";
    let denied = mdsa(&hub, home.path(), &["pull", reference], &[]);
    assert!(!denied.status.success());
    let err = stderr(&denied);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("401") && err.contains("HF_TOKEN"), "{err}");

    let allowed = mdsa(
        &hub,
        home.path(),
        &["pull", reference],
        &[("HF_TOKEN", "hf_right")],
    );
    assert!(allowed.status.success(), "{}", stderr(&allowed));
}

#[test]
fn generate_downloads_a_missing_model_on_first_use() {
    let hub = hub_with_models();
    let home = tempfile::tempdir().unwrap();
    let output = mdsa(
        &hub,
        home.path(),
        &[
            "generate",
            "--model",
            "tiny/gguf:model.q8_0.gguf",
            "--max-tokens",
            "2",
            "hello",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("downloading model.q8_0.gguf"));
    assert_eq!(hub.body_gets("model.q8_0.gguf").len(), 1);
}

#[test]
fn two_processes_pulling_the_same_file_download_it_once() {
    let hub = FakeHub::start();
    let gguf = std::fs::read(fixtures().join("gemma3/model.q8_0.gguf")).unwrap();
    let mut repo = FakeRepo::one("model.q8_0.gguf", gguf.clone());
    // Eight chunks 100 ms apart: the second process starts well inside that.
    repo.faults.insert("model.q8_0.gguf".into(), Fault::Slow);
    hub.add("tiny/slow", repo);
    let home = tempfile::tempdir().unwrap();
    let pull = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mdsa"));
        command
            .args(["pull", "tiny/slow:model.q8_0.gguf"])
            .env("HF_HOME", home.path())
            .env("HF_ENDPOINT", &hub.url)
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_TOKEN")
            .env_remove("MDSA_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command.spawn().expect("the mdsa binary runs")
    };
    let (first, second) = (pull(), pull());
    let outputs = [first, second].map(|child| child.wait_with_output().unwrap());
    for output in &outputs {
        assert!(output.status.success(), "{}", stderr(output));
    }
    let path = |output: &Output| stdout(output).trim().split('\t').nth(2).unwrap().to_owned();
    assert_eq!(path(&outputs[0]), path(&outputs[1]));
    assert_eq!(std::fs::read(path(&outputs[0])).unwrap(), gguf);
    // Both processes asked the Hub (neither found the file complete at
    // first), yet the body was sent once: the other waited on the lock.
    let heads = hub
        .log()
        .iter()
        .filter(|line| line.starts_with("HEAD") && line.ends_with("model.q8_0.gguf"))
        .count();
    assert_eq!(heads, 2, "{:?}", hub.log());
    assert_eq!(hub.body_gets("model.q8_0.gguf").len(), 1, "{:?}", hub.log());
}

/// The real MiniLM snapshot of the local cache, when `cargo xtask fetch-models` ran.
fn cached_minilm() -> Option<PathBuf> {
    let cache = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| dirs::home_dir().map(|h| h.join(".cache/huggingface/hub")))?;
    let repo = cache.join("models--sentence-transformers--all-MiniLM-L6-v2");
    let commit = std::fs::read_to_string(repo.join("refs/main")).ok()?;
    let snapshot = repo.join("snapshots").join(commit.trim());
    snapshot
        .join("model.safetensors")
        .is_file()
        .then_some(snapshot)
}

#[test]
#[allow(clippy::print_stderr)]
fn query_on_an_empty_cache_downloads_the_encoder_and_the_domain_model_then_answers() {
    let Some(minilm) = cached_minilm() else {
        eprintln!("skipping: MiniLM is not in the local cache; run `cargo xtask fetch-models`");
        return;
    };
    let hub = hub_with_models();
    hub.add(
        "sentence-transformers/all-MiniLM-L6-v2",
        FakeRepo::from_dir(&minilm),
    );
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("mdsa.ron");
    std::fs::write(
        &config,
        r#"(
            models: [
                (id: "minilm", source: "sentence-transformers/all-MiniLM-L6-v2", role: encoder, pinned: true),
                (id: "tiny", source: "tiny/gguf:model.q8_0.gguf", role: generator, max_context: 256),
            ],
            encoder: "minilm",
            default_generator: "tiny",
            models_dir: "models",
        )"#,
    )
    .unwrap();
    let output = mdsa(
        &hub,
        home.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "query",
            "--json",
            "--max-tokens",
            "4",
            "I have a fever and a headache",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["domain"], "medical", "{answer:#}");
    assert_eq!(answer["model"], "tiny", "{answer:#}");
    // Both came from the fake Hub into the configured `models_dir`.
    assert_eq!(hub.body_gets("model.q8_0.gguf").len(), 1);
    assert_eq!(hub.body_gets("model.safetensors").len(), 1);
    // The download is visible as `--json` progress on stderr, a JSON object a
    // line: loading, then the file arriving until verified, then loaded.
    let progress: Vec<serde_json::Value> = stderr(&output)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|event: &serde_json::Value| event["model"] == "tiny")
        .collect();
    let kinds: Vec<&str> = progress
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"loading"), "{progress:#?}");
    assert_eq!(kinds.last(), Some(&"loaded"), "{progress:#?}");
    let size = std::fs::metadata(fixtures().join("gemma3/model.q8_0.gguf"))
        .unwrap()
        .len();
    let done = &progress[progress.len() - 2];
    assert_eq!(done["event"], "downloading", "{progress:#?}");
    assert_eq!(done["file"], "model.q8_0.gguf");
    assert_eq!(done["done"], true);
    assert_eq!(done["downloaded"], size);
    assert_eq!(done["total"], size);
    let models = home.path().join("models");
    assert!(models.join("models--tiny--gguf").is_dir());
    assert!(
        models
            .join("models--sentence-transformers--all-MiniLM-L6-v2")
            .is_dir()
    );
}
