//! Bad configuration and bad prompts through the facade, with the real
//! models: each is a clear error naming what is wrong (or, for odd but
//! harmless text, an answer), never a panic. Skips (with a message) when
//! `cargo xtask fetch-models` has not run.

#![allow(clippy::print_stderr)]

mod common;

use std::ops::ControlFlow;

use common::system;
use mdsa::domains::GenerationSettings;
use mdsa::domains::{DomainConfig, DomainError, DomainRegistry, DomainsFile};
use mdsa::engine::ModelError;
use mdsa::{Mdsa, MdsaError, QueryOptions, SystemConfig};

fn build_with(domains: &str) -> Result<Mdsa, MdsaError> {
    Mdsa::builder()
        .domains(DomainRegistry::from_str(domains, "domains.ron")?)
        .build()
}

fn one_domain(extra: &str) -> String {
    format!(
        r#"(
    domains: [
        (
            id: "cooking",
            name: "Cooking",
            examples: ["How long do I boil an egg?"],
            {extra}
        ),
    ],
)"#
    )
}

#[test]
fn a_domain_naming_an_unknown_model_fails_at_build_naming_domain_and_model() {
    if system().is_none() {
        return;
    }
    for model in ["chef-7b", "../models/chef.gguf", "/nowhere/chef.gguf"] {
        let error = build_with(&one_domain(&format!("model: {model:?},")))
            .expect_err("an unknown model is a build error")
            .to_string();
        assert!(
            error.contains("cooking") && error.contains(model) && error.contains("model"),
            "{model}: {error}"
        );
        // It says what would have been accepted.
        assert!(error.contains("smollm2"), "{model}: {error}");
        assert!(!error.contains('\n'), "{error}");
    }
    // The file's default model too.
    let text = one_domain("").replace(
        "(\n    domains",
        "(\n    default_model: \"chef-7b\",\n    domains",
    );
    let error = build_with(&text).expect_err("unknown default").to_string();
    assert!(
        error.contains("default_model") && error.contains("chef-7b"),
        "{error}"
    );
}

#[test]
fn max_tokens_beyond_the_models_context_fails_at_build() {
    if system().is_none() {
        return;
    }
    // SmolLM2 is configured with a 2048-token context by default.
    let error = build_with(&one_domain("generation: (max_tokens: 4096),"))
        .expect_err("max_tokens past the context")
        .to_string();
    assert!(
        error.contains("cooking")
            && error.contains("generation.max_tokens")
            && error.contains("4096")
            && error.contains("2048")
            && error.contains("smollm2"),
        "{error}"
    );
    // Reloading such domains is refused the same way, and the old set stays.
    let mdsa = system().expect("built");
    let bad = DomainConfig::new("cooking", "Recipes")
        .examples(["How long do I boil an egg?"])
        .generation(GenerationSettings {
            max_tokens: 2048,
            ..GenerationSettings::default()
        });
    let mut domains = DomainRegistry::builtin();
    domains.insert(bad).expect("valid on its own");
    let error = mdsa
        .reload_domains(domains)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("generation.max_tokens"), "{error}");
    assert!(!mdsa.domain_ids().contains(&"cooking".to_string()));
    // Just under the context is allowed (the engine stops at the context).
    build_with(&one_domain("generation: (max_tokens: 2000),")).expect("fits");
}

#[test]
fn domains_file_errors_name_file_line_and_field() {
    let cases = [
        // Malformed RON.
        (
            "(domains: [(id: \"a\", name: \"A\",, examples: [\"x\"])])",
            1,
            "domains[0]",
        ),
        ("(\n  domains: [\n    (id: \"a\"\n", 3, "domains[0].id"),
        // Unknown field, wrong type.
        (
            "(\n  domains: [\n    (id: \"a\", name: \"A\", examples: [\"x\"],\n     colour: 1),\n  ],\n)",
            4,
            "domains[0].colour",
        ),
        (
            "(\n  domains: [\n    (id: \"a\", name: \"A\", examples: \"x\"),\n  ],\n)",
            3,
            "domains[0].examples",
        ),
        (
            "(\n  domains: [\n    (id: \"a\", name: \"A\", examples: [\"x\"],\n     timeout_secs: \"soon\"),\n  ],\n)",
            4,
            "domains[0].timeout_secs",
        ),
        // Empty lists and empty entries.
        (
            "(\n  domains: [\n    (id: \"a\", name: \"A\",\n     examples: []),\n  ],\n)",
            4,
            "domains[0].examples",
        ),
        (
            "(\n  domains: [\n    (id: \"a\", name: \"A\", examples: [\"x\"],\n     keywords: [\"tax\", \" \"]),\n  ],\n)",
            4,
            "domains[0].keywords[1]",
        ),
        // Out-of-range generation settings.
        (
            "(\n  domains: [\n    (id: \"a\", name: \"A\", examples: [\"x\"],\n     generation: (top_k: 3, top_p: 1.01)),\n  ],\n)",
            4,
            "domains[0].generation.top_p",
        ),
        (
            "(\n  domains: [\n    (id: \"a\", name: \"A\", examples: [\"x\"],\n     timeout_secs: 0.0),\n  ],\n)",
            4,
            "domains[0].timeout_secs",
        ),
        // Duplicate ids point at the second.
        (
            "(\n  domains: [\n    (id: \"a\", name: \"A\", examples: [\"x\"]),\n    (id: \"a\", name: \"B\", examples: [\"y\"]),\n  ],\n)",
            4,
            "domains[1].id",
        ),
    ];
    for (text, line, field) in cases {
        let error = DomainsFile::parse(text, "domains.ron").expect_err(text);
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("domains.ron:{line}:")),
            "{text}\n-> {message} (expected line {line})"
        );
        assert!(
            message.contains(&format!(" {field}: ")),
            "{text}\n-> {message} (expected field {field})"
        );
        assert!(!message.contains('\n'), "{message}");
    }
    // An empty keyword list is allowed: examples carry the routing.
    DomainsFile::parse(
        "(domains: [(id: \"a\", name: \"A\", examples: [\"x\"], keywords: [])])",
        "domains.ron",
    )
    .expect("no keywords is fine");
}

#[test]
fn system_config_names_the_model_a_domain_lacks_and_bad_values() {
    for (text, field) in [
        (
            "(\n  default_generator: \"chef-7b\",\n)",
            "default_generator",
        ),
        (
            "(\n  models: [\n    (id: \"minilm\", source: \"sentence-transformers/all-MiniLM-L6-v2\", role: encoder),\n    (id: \"smollm2\", source: \"../../etc/passwd\", role: generator),\n  ],\n)",
            "models[1].source",
        ),
        (
            "(\n  models: [\n    (id: \"minilm\", source: \"sentence-transformers/all-MiniLM-L6-v2\", role: encoder),\n    (id: \"smollm2\", source: \"x/y\", role: generator,\n     max_context: 0),\n  ],\n)",
            "models[1].max_context",
        ),
        ("(\n  budget: (ram_bytes: -1),\n)", "budget.ram_bytes"),
    ] {
        let message = SystemConfig::parse(text, "mdsa.ron")
            .expect_err(text)
            .to_string();
        assert!(message.starts_with("mdsa.ron:"), "{message}");
        assert!(
            message.contains(&format!(" {field}: ")),
            "{text}\n-> {message}"
        );
    }
}

fn forced(domain: &str, max_tokens: usize) -> QueryOptions {
    QueryOptions {
        domain: Some(domain.into()),
        max_tokens: Some(max_tokens),
        ..QueryOptions::default()
    }
}

fn ask(mdsa: &Mdsa, query: &str, options: &QueryOptions) -> Result<mdsa::QueryResponse, MdsaError> {
    mdsa.query_with(query, options, &mut |_| ControlFlow::Continue(()))
}

#[test]
fn prompts_that_are_empty_huge_or_odd() {
    let Some(mdsa) = system() else { return };
    for empty in ["", " ", "\t\n\r", "\u{a0}\u{2003}\u{3000}"] {
        let error = mdsa.query(empty).expect_err("empty");
        assert!(
            matches!(error, MdsaError::InvalidRequest(_)) && error.to_string().contains("empty"),
            "{empty:?}: {error}"
        );
        assert!(mdsa.route(empty).is_err(), "{empty:?}");
    }
    // Longer than the context: a clear error naming both lengths, not a
    // silently cut prompt.
    let long = "What does compound interest do to my savings? ".repeat(400);
    let error = ask(mdsa, &long, &forced("finance", 8)).expect_err("too long");
    match &error {
        MdsaError::Domain(DomainError::Model(ModelError::ContextOverflow { context, .. })) => {
            assert_eq!(*context, 2048, "{error}");
        }
        other => panic!("expected a context overflow, got {other}"),
    }
    assert!(error.to_string().contains("2048"), "{error}");
    // A megabyte, routed: the router reads what fits, the generator refuses.
    let megabyte = "Is my mortgage rate fixed or variable? ".repeat((1 << 20) / 39);
    let started = std::time::Instant::now();
    let result = mdsa.query_with(
        &megabyte,
        &QueryOptions {
            max_tokens: Some(8),
            ..QueryOptions::default()
        },
        &mut |_| ControlFlow::Continue(()),
    );
    match result {
        Err(MdsaError::Domain(DomainError::Model(ModelError::ContextOverflow { .. }))) => {}
        Ok(response) => assert_eq!(response.outcome, mdsa::Outcome::Abstained, "{response:?}"),
        Err(other) => panic!("expected a context overflow, got {other}"),
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    // Control characters and NUL are text: answered.
    let response = ask(
        mdsa,
        "Why does\u{0} my C string\u{7} end\u{1b}[0m early?\u{feff}",
        &forced("technical", 8),
    )
    .expect("answered");
    assert!(response.usage.completion_tokens > 0, "{response:?}");
}
