//! `mdsa serve` answering a domain whose model is not in the cache: the first
//! request downloads it from the fake Hub of mdsa-engine's tests (on loopback)
//! and streams the download's progress as `mdsa` chunks before the answer.

mod common;
#[path = "../../mdsa-engine/tests/support/fake_hub.rs"]
mod fake_hub;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{TestServer, chat, post_json, sse_data};
use fake_hub::{FakeHub, FakeRepo};
use mdsa::domains::{DomainConfig, ValidationRules};
use mdsa::engine::ResolveOptions;
use mdsa::local::LocalBackend;
use mdsa::{Mdsa, SystemConfig};
use mdsa_server::ServerConfig;
use serde_json::{Value, json};

const GGUF: &str = "../mdsa-models/tests/fixtures/families/gemma3/model.q8_0.gguf";

/// The real MiniLM snapshot of the local cache (`cargo xtask fetch-models`).
fn cached_minilm() -> PathBuf {
    let repo = ResolveOptions::default()
        .effective_cache_dir()
        .expect("a cache directory")
        .join("models--sentence-transformers--all-MiniLM-L6-v2");
    let commit = std::fs::read_to_string(repo.join("refs/main"))
        .expect("MiniLM is in the cache (run `cargo xtask fetch-models`)");
    repo.join("snapshots").join(commit.trim())
}

#[test]
fn a_missing_domain_model_is_downloaded_on_first_use_with_progress_chunks() {
    let hub = FakeHub::start();
    let gguf = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(GGUF)).unwrap();
    hub.add("tiny/gguf", FakeRepo::one("model.q8_0.gguf", gguf.clone()));
    hub.add(
        "sentence-transformers/all-MiniLM-L6-v2",
        FakeRepo::from_dir(&cached_minilm()),
    );
    let cache = tempfile::tempdir().unwrap();
    // An empty cache that downloads from the fake Hub, whatever the
    // environment (CI sets HF_HUB_OFFLINE) says.
    let local = LocalBackend::new(ResolveOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        allow_download: true,
        endpoint: Some(hub.url.clone()),
        token: None,
    });
    let domain = DomainConfig::new("tiny", "Questions for the tiny test model")
        .examples(["a question for the tiny model"])
        .model("tiny/gguf:model.q8_0.gguf")
        .validation(ValidationRules {
            min_chars: 0,
            ..ValidationRules::default()
        });
    let mdsa = Mdsa::builder()
        .config(SystemConfig::default())
        .backend(Arc::new(local))
        .domain(domain)
        .build()
        .expect("mdsa builds with the encoder from the fake Hub");
    assert_eq!(hub.body_gets("model.safetensors").len(), 1);
    assert!(
        hub.body_gets("model.q8_0.gguf").is_empty(),
        "fetched on first use only"
    );

    let server = TestServer::start(mdsa, ServerConfig::default());
    let mut request = chat("tiny", "What is the capital of France?", 4);
    request["stream"] = json!(true);
    let reply = post_json(&server.url("/v1/chat/completions"), &request);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let events: Vec<Value> = sse_data(&reply.body)
        .iter()
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| chunk.get("mdsa").cloned())
        .filter(|mdsa| mdsa.get("event").is_some())
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind);
    let (loading, loaded) = (at("loading").unwrap(), at("loaded").unwrap());
    let downloads: Vec<&Value> = events[loading..loaded]
        .iter()
        .filter(|e| e["event"] == "downloading")
        .collect();
    let last = downloads
        .last()
        .unwrap_or_else(|| panic!("no download chunk: {kinds:?}"));
    assert_eq!(last["model"], "tiny/gguf:model.q8_0.gguf", "{last}");
    assert_eq!(last["file"], "model.q8_0.gguf");
    assert_eq!(last["done"], true);
    assert_eq!(last["downloaded"], gguf.len() as u64);
    assert_eq!(last["total"], gguf.len() as u64);
    assert_eq!(hub.body_gets("model.q8_0.gguf").len(), 1);

    // The second request finds it resident: no download, no chunk.
    let reply = post_json(&server.url("/v1/chat/completions"), &request);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!reply.body.contains("\"downloading\""), "{}", reply.body);
    assert_eq!(hub.body_gets("model.q8_0.gguf").len(), 1);
    server.shutdown();
}
