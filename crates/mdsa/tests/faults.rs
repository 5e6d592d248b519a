//! Faults through the facade, with the real models: model files that change
//! under a loaded model, a model that cannot load, and domains reloaded under
//! traffic. Requests keep working or fail with a clear error; none is lost.
//! Skips (with a message) when `cargo xtask fetch-models` has not run.

#![allow(clippy::print_stderr)]

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mdsa::domains::{DomainConfig, DomainRegistry};
use mdsa::engine::{ModelRef, ModelRole, ModelSpec, ResolveOptions, ResolvedModel};
use mdsa::local::ManagerError;
use mdsa::monitor::LogFilter;
use mdsa::{Mdsa, MdsaError, QueryOptions, SystemConfig};

/// SmolLM2's GGUF in the local cache, or `None` (the test then skips).
fn smollm2_file() -> Option<PathBuf> {
    let resolved = mdsa::config::DEFAULT_GENERATOR_SOURCE
        .parse::<ModelRef>()
        .ok()?
        .resolve(&ResolveOptions::offline());
    match resolved {
        Ok(ResolvedModel::Gguf { path }) => Some(path),
        other => {
            eprintln!("skipping: SmolLM2 not fetched ({other:?}); run `cargo xtask fetch-models`");
            None
        }
    }
}

/// The default configuration with a second generator, `copy`, answering
/// from `file`, and the technical domain answered by it.
fn with_copy(file: &Path) -> (SystemConfig, DomainRegistry) {
    let mut config = SystemConfig::default();
    let mut copy = ModelSpec::new("copy", file.display().to_string(), ModelRole::Generator);
    copy.max_context = Some(1024);
    config.models.push(copy);
    let mut domains = DomainRegistry::builtin();
    let technical = domains.get("technical").expect("built in").clone();
    domains.insert(technical.model("copy")).expect("valid");
    (config, domains)
}

fn ask(mdsa: &Mdsa, domain: &str) -> Result<mdsa::QueryResponse, MdsaError> {
    mdsa.query_with(
        "Why does my program crash with a segmentation fault?",
        &QueryOptions {
            domain: Some(domain.into()),
            max_tokens: Some(4),
            ..QueryOptions::default()
        },
        &mut |_| ControlFlow::Continue(()),
    )
}

#[test]
fn a_model_file_deleted_or_replaced_while_loaded() {
    let Some(original) = smollm2_file() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("copy.gguf");
    std::fs::copy(&original, &file).expect("copied");
    let (config, domains) = with_copy(&file);
    let mdsa = Mdsa::builder()
        .config(config)
        .domains(domains)
        .build()
        .expect("built");
    ask(&mdsa, "technical").expect("answers from the copy");

    // Deleted: the loaded model keeps its mapping and goes on answering.
    std::fs::remove_file(&file).expect("deleted");
    ask(&mdsa, "technical").expect("answers from the loaded copy");
    // Replaced by a corrupt file (written aside and renamed over, as tools
    // do): still the loaded copy.
    let aside = dir.path().join("copy.gguf.part");
    let mut corrupt = std::fs::read(&original).expect("read");
    corrupt.truncate(4096);
    std::fs::write(&aside, &corrupt).expect("written");
    std::fs::rename(&aside, &file).expect("renamed");
    ask(&mdsa, "technical").expect("answers from the loaded copy");

    // Unloaded, the next load reports the file problem, naming the file;
    // other domains go on.
    mdsa.manager().unload("copy").expect("unloaded");
    let error = ask(&mdsa, "technical").expect_err("the corrupt file");
    assert!(
        matches!(error, MdsaError::Manager(ManagerError::Load { .. })),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("copy") && message.contains("copy.gguf"),
        "{message}"
    );
    ask(&mdsa, "finance").expect("another model answers");
    // Deleted for good: the error says so.
    std::fs::remove_file(&file).expect("deleted");
    let message = ask(&mdsa, "technical").expect_err("gone").to_string();
    assert!(message.contains("copy.gguf"), "{message}");
    // Put back, it loads again.
    std::fs::copy(&original, &file).expect("copied back");
    ask(&mdsa, "technical").expect("answers again");
}

#[test]
fn a_model_that_cannot_load_fails_only_its_own_requests() {
    let Some(original) = smollm2_file() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("copy.gguf");
    // A GGUF header that promises tensors the file does not hold.
    let mut bytes = std::fs::read(&original).expect("read");
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&file, &bytes).expect("written");
    let (config, domains) = with_copy(&file);
    let mdsa = Mdsa::builder()
        .config(config)
        .domains(domains)
        .build()
        .expect("built: models load on first use");
    let threads: Vec<_> = ["technical", "finance", "technical", "medical"]
        .into_iter()
        .map(|domain| {
            let mdsa = mdsa.clone();
            std::thread::spawn(move || (domain, ask(&mdsa, domain)))
        })
        .collect();
    for thread in threads {
        let (domain, result) = thread.join().expect("no panic");
        match (domain, result) {
            ("technical", Err(error)) => {
                let message = error.to_string();
                assert!(message.contains("copy.gguf"), "{message}");
            }
            ("technical", Ok(response)) => panic!("a broken model answered: {response:?}"),
            (_, result) => {
                result.expect("other models answer");
            }
        }
    }
    let stats = mdsa.manager().stats();
    assert!(stats.failures >= 1, "{stats:?}");
    assert!(!mdsa.manager().is_resident("copy"));
}

#[test]
fn domains_reloaded_under_traffic_lose_no_request() {
    if smollm2_file().is_none() {
        return;
    }
    let mdsa = Mdsa::builder().build().expect("built");
    let cooking = DomainConfig::new("cooking", "Recipes, baking and kitchen techniques")
        .keywords(["recipe", "bake", "oven"])
        .examples([
            "How long do I bake banana bread?",
            "What can I cook with leftover rice?",
        ]);
    let with_cooking = {
        let mut domains = DomainRegistry::builtin();
        domains.insert(cooking).expect("valid");
        domains
    };
    let queries = [
        "How long do I bake banana bread at 180 degrees?",
        "Should I pay off my credit card before investing?",
        "I have a fever and a headache, what should I do?",
        "My laptop will not boot after the update",
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|worker| {
            let mdsa = mdsa.clone();
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for n in 0..6 {
                    let id = format!("reload-{worker}-{n}");
                    let result = mdsa.query_with(
                        queries[(worker + n) % queries.len()],
                        &QueryOptions {
                            request_id: Some(id.clone()),
                            max_tokens: Some(4),
                            ..QueryOptions::default()
                        },
                        &mut |_| ControlFlow::Continue(()),
                    );
                    outcomes.push((id, result.map(|r| r.outcome).map_err(|e| e.to_string())));
                }
                outcomes
            })
        })
        .collect();
    let reloader = {
        let mdsa = mdsa.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut reloads = 0;
            while !stop.load(Ordering::Relaxed) {
                let next = if reloads % 2 == 0 {
                    with_cooking.clone()
                } else {
                    DomainRegistry::builtin()
                };
                mdsa.reload_domains(next).expect("reloads");
                reloads += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            reloads
        })
    };
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.join().expect("no panic"));
    }
    stop.store(true, Ordering::Relaxed);
    let reloads = reloader.join().expect("no panic");
    assert!(reloads >= 2, "only {reloads} reloads happened");
    assert_eq!(outcomes.len(), 18);
    // Every request ended in an outcome or a clear error, and the log has
    // each one exactly once.
    let logged = mdsa.logger().query(&LogFilter::new());
    let logged_ids: Vec<&str> = logged
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| id.starts_with("reload-"))
        .collect();
    let unique: HashSet<&str> = logged_ids.iter().copied().collect();
    assert_eq!(
        logged_ids.len(),
        unique.len(),
        "logged twice: {logged_ids:?}"
    );
    for (id, outcome) in &outcomes {
        assert!(
            unique.contains(id.as_str()),
            "{id} not logged ({outcome:?})"
        );
        if let Err(message) = outcome {
            assert!(message.len() > 10, "{id}: vague error {message:?}");
        }
    }
    assert_eq!(unique.len(), outcomes.len());
}
