//! Hub downloads against a fake Hub on loopback (`support/fake_hub.rs`): fresh
//! pulls, gated repos, resumed and corrupted bodies, concurrent pulls, offline
//! mode. The endpoint and token are set on the options, never taken from the
//! environment, so `HF_HUB_OFFLINE=1` in CI and a real `HF_TOKEN` change nothing
//! and no request leaves the machine.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use mdsa_engine::source::{
    DownloadBlocked, HubToken, ModelRef, ResolveOptions, ResolvedModel, SourceError,
};
use support::fake_hub::{COMMIT, FakeHub, FakeRepo, Fault, sha256_hex};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mdsa-models/tests/fixtures/families")
}

fn gguf_bytes() -> Vec<u8> {
    fs::read(fixtures().join("gemma3/model.q8_0.gguf")).unwrap()
}

/// Downloads allowed, from `hub`, into `cache`, with `token` (never the environment's).
fn online(hub: &FakeHub, cache: &Path, token: &str) -> ResolveOptions {
    ResolveOptions {
        cache_dir: Some(cache.to_path_buf()),
        allow_download: true,
        endpoint: Some(hub.url.clone()),
        // A token the fake Hub's gated repos do not accept, unless the test says so.
        token: HubToken::new(token),
    }
}

fn model(text: &str) -> ModelRef {
    text.parse().unwrap()
}

/// Whether anything under `dir` is a file that could load as `name`'s content.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn fresh_pull_of_a_hugging_face_layout_into_an_empty_cache() {
    let hub = FakeHub::start();
    let dir = fixtures().join("gemma2/hf");
    hub.add("tiny/gemma2", FakeRepo::from_dir(&dir));
    let cache = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    let resolved = model("tiny/gemma2")
        .resolve_with_progress(&online(&hub, cache.path(), "none"), &mut |p| {
            seen.push((p.file.to_owned(), p.downloaded, p.total, p.done));
        })
        .unwrap();
    let ResolvedModel::SafetensorsDir {
        dir: snapshot,
        config,
        tokenizer,
        weights,
        ..
    } = resolved
    else {
        panic!("expected a Hugging Face layout, got {resolved:?}");
    };
    assert_eq!(
        snapshot,
        cache
            .path()
            .join("models--tiny--gemma2/snapshots")
            .join(COMMIT)
    );
    for (got, name) in [
        (&config, "config.json"),
        (tokenizer.as_ref().unwrap(), "tokenizer.json"),
        (&weights[0], "model.safetensors"),
    ] {
        assert_eq!(
            fs::read(got).unwrap(),
            fs::read(dir.join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        fs::read_to_string(cache.path().join("models--tiny--gemma2/refs/main")).unwrap(),
        COMMIT
    );
    // The weights are stored under their sha256, as the Hub names LFS blobs.
    let weights_sha = sha256_hex(&fs::read(dir.join("model.safetensors")).unwrap());
    assert!(
        cache
            .path()
            .join("models--tiny--gemma2/blobs")
            .join(&weights_sha)
            .is_file()
    );
    let size = fs::metadata(dir.join("model.safetensors")).unwrap().len();
    assert!(
        seen.contains(&("model.safetensors".into(), size, size, true)),
        "{seen:?}"
    );

    // Now cached: resolving offline finds the same files without a request.
    let requests = hub.log().len();
    let again = model("tiny/gemma2")
        .resolve(&ResolveOptions::offline().with_cache_dir(cache.path()))
        .unwrap();
    assert!(matches!(again, ResolvedModel::SafetensorsDir { .. }));
    assert_eq!(hub.log().len(), requests);
}

#[test]
fn fresh_pull_of_a_gguf_file_follows_the_cdn_redirect_and_a_renamed_repo() {
    let hub = FakeHub::start();
    let bytes = gguf_bytes();
    hub.add("tiny/gguf", FakeRepo::one("model.q8_0.gguf", bytes.clone()));
    hub.rename("old/gguf", "tiny/gguf");
    let cache = tempfile::tempdir().unwrap();
    let opts = online(&hub, cache.path(), "none");
    for reference in [
        "tiny/gguf:model.q8_0.gguf",
        "tiny/gguf",
        "old/gguf:model.q8_0.gguf",
    ] {
        let ResolvedModel::Gguf { path } = model(reference).resolve(&opts).unwrap() else {
            panic!("expected a GGUF for {reference}");
        };
        assert_eq!(fs::read(&path).unwrap(), bytes, "{reference}");
    }
    // One body for `tiny/gguf` (the bare id found it cached); the old name is
    // cached under its own `models--old--gguf`, as Python's client does it.
    assert_eq!(hub.body_gets("model.q8_0.gguf").len(), 2, "{:?}", hub.log());
    assert!(cache.path().join("models--old--gguf/refs/main").is_file());
}

#[test]
fn gated_repo_needs_the_right_token_and_the_error_names_hf_token() {
    let hub = FakeHub::start();
    let mut repo = FakeRepo::one("model.q8_0.gguf", gguf_bytes());
    repo.token = Some("hf_right".into());
    hub.add("gated/model", repo);
    let cache = tempfile::tempdir().unwrap();
    let reference = model("gated/model:model.q8_0.gguf");

    let error = reference
        .resolve(&online(&hub, cache.path(), "hf_wrong"))
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SourceError::Download(_)), "{message}");
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("HF_TOKEN"), "{message}");
    assert!(message.contains("gated/model"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    assert!(files_under(&cache.path().join("models--gated--model/snapshots")).is_empty());

    let resolved = reference
        .resolve(&online(&hub, cache.path(), "hf_right"))
        .unwrap();
    assert!(matches!(resolved, ResolvedModel::Gguf { .. }));
}

#[test]
fn a_connection_cut_mid_body_is_resumed_and_the_sha256_matches() {
    let hub = FakeHub::start();
    let bytes = gguf_bytes();
    let mut repo = FakeRepo::one("model.q8_0.gguf", bytes.clone());
    repo.faults.insert("model.q8_0.gguf".into(), Fault::CutOnce);
    hub.add("tiny/cut", repo);
    let cache = tempfile::tempdir().unwrap();
    let ResolvedModel::Gguf { path } = model("tiny/cut:model.q8_0.gguf")
        .resolve(&online(&hub, cache.path(), "none"))
        .unwrap()
    else {
        panic!("expected a GGUF");
    };
    assert_eq!(sha256_hex(&fs::read(&path).unwrap()), sha256_hex(&bytes));
    let gets = hub.body_gets("model.q8_0.gguf");
    assert_eq!(gets.len(), 2, "{gets:?}");
    // The second request asked only for what the first did not deliver.
    assert!(gets[1].contains("bytes="), "{gets:?}");
    assert!(!gets[1].contains("bytes=0-"), "{gets:?}");
    let leftovers: Vec<_> = files_under(cache.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".incomplete"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_corrupted_body_fails_the_checksum_and_leaves_nothing_that_loads() {
    let hub = FakeHub::start();
    let mut repo = FakeRepo::one("model.q8_0.gguf", gguf_bytes());
    repo.faults.insert("model.q8_0.gguf".into(), Fault::Corrupt);
    hub.add("tiny/bad", repo);
    let cache = tempfile::tempdir().unwrap();
    let reference = model("tiny/bad:model.q8_0.gguf");
    let error = reference
        .resolve(&online(&hub, cache.path(), "none"))
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("sha256"), "{message}");
    assert!(message.contains("model.q8_0.gguf"), "{message}");
    // No blob, no partial file, no snapshot entry.
    let left = files_under(cache.path());
    assert!(
        left.iter()
            .all(|p| p.extension().is_some_and(|e| e == "lock")),
        "{left:?}"
    );
    let offline = reference.resolve(&ResolveOptions::offline().with_cache_dir(cache.path()));
    assert!(matches!(offline, Err(SourceError::NotCached(_))));
}

#[test]
fn two_pulls_of_the_same_file_at_once_download_it_once() {
    let hub = FakeHub::start();
    let bytes = gguf_bytes();
    let mut repo = FakeRepo::one("model.q8_0.gguf", bytes.clone());
    repo.faults.insert("model.q8_0.gguf".into(), Fault::Slow);
    hub.add("tiny/slow", repo);
    let cache = tempfile::tempdir().unwrap();
    let opts = online(&hub, cache.path(), "none");
    let reference = model("tiny/slow:model.q8_0.gguf");
    let paths: Vec<PathBuf> = std::thread::scope(|scope| {
        let pulls: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| match reference.resolve(&opts).unwrap() {
                    ResolvedModel::Gguf { path } => path,
                    other => panic!("expected a GGUF, got {other:?}"),
                })
            })
            .collect();
        pulls.into_iter().map(|p| p.join().unwrap()).collect()
    });
    assert_eq!(paths[0], paths[1]);
    assert_eq!(fs::read(&paths[0]).unwrap(), bytes);
    // Both asked for the metadata; only one fetched the body, the other waited.
    assert_eq!(hub.body_gets("model.q8_0.gguf").len(), 1, "{:?}", hub.log());
}

#[test]
fn offline_is_a_clear_error_and_no_request_reaches_the_hub() {
    let hub = FakeHub::start();
    hub.add("tiny/gguf", FakeRepo::one("model.q8_0.gguf", gguf_bytes()));
    let cache = tempfile::tempdir().unwrap();
    let opts = ResolveOptions {
        allow_download: false,
        ..online(&hub, cache.path(), "none")
    };
    for reference in ["tiny/gguf:model.q8_0.gguf", "tiny/gguf"] {
        let error = model(reference).resolve(&opts).unwrap_err();
        let SourceError::NotCached(details) = &error else {
            panic!("expected NotCached, got {error}");
        };
        // HF_HUB_OFFLINE (set by CI) takes precedence in the reason given.
        assert!(matches!(
            details.blocked,
            DownloadBlocked::Disabled | DownloadBlocked::Offline
        ));
        let message = error.to_string();
        assert!(message.contains("offline"), "{message}");
        assert!(
            message.contains(reference.split(':').next().unwrap()),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }
    assert!(hub.log().is_empty(), "{:?}", hub.log());
}

#[test]
fn a_gguf_repo_without_a_file_downloads_the_preferred_quantization() {
    let hub = FakeHub::start();
    let bytes = gguf_bytes();
    let mut repo = FakeRepo::default();
    for name in ["m.Q8_0.gguf", "m.Q4_K_M.gguf", "m.F16.gguf"] {
        repo.files.insert(name.into(), bytes.clone());
    }
    hub.add("tiny/quants", repo);
    let cache = tempfile::tempdir().unwrap();
    let opts = online(&hub, cache.path(), "none");
    for (reference, file) in [
        ("tiny/quants", "m.Q4_K_M.gguf"),
        ("tiny/quants:Q8_0", "m.Q8_0.gguf"),
    ] {
        let ResolvedModel::Gguf { path } = model(reference).resolve(&opts).unwrap() else {
            panic!("expected a GGUF for {reference}");
        };
        assert!(path.ends_with(file), "{reference}: {}", path.display());
    }
    // Only the chosen files were fetched.
    assert!(hub.body_gets("m.F16.gguf").is_empty());
    let error = model("tiny/quants:Q6_K").resolve(&opts).unwrap_err();
    assert!(error.to_string().contains("Q4_K_M"), "{error}");
}
