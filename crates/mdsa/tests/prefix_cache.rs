//! Prefix caching through the facade: a domain's rendered system prompt is
//! run once per model and reused by its later queries (visible in the usage
//! and the per-model metrics), and a domain reload forgets it.

// Tests report why they skip.
#![allow(clippy::print_stderr)]

use std::ops::ControlFlow;

use mdsa::domains::{DomainConfig, ValidationRules};
use mdsa::{Mdsa, QueryOptions, QueryResponse};

fn bank() -> DomainConfig {
    DomainConfig::new("bank", "Questions from the customers of a bank")
        .examples(["How do I open a savings account?"])
        .system_prompt(
            "You are a careful assistant for the customers of a bank. Answer in one short \
             sentence, name the product when you can, and never invent account details.",
        )
        // Nothing is rejected: each query is one attempt, one prompt.
        .validation(ValidationRules {
            min_chars: 0,
            max_repeats: usize::MAX,
            reject_truncated: false,
            ..ValidationRules::default()
        })
}

#[test]
fn a_domain_prompt_is_run_once_then_reused_and_a_reload_forgets_it() {
    // Its own system: the kept prefixes are this test's alone.
    let mdsa = match Mdsa::builder().domain(bank()).build() {
        Ok(mdsa) => mdsa,
        Err(error) => {
            eprintln!("skipping: models not available ({error}); run `cargo xtask fetch-models`");
            return;
        }
    };
    let ask = |query: &str| -> QueryResponse {
        let options = QueryOptions {
            domain: Some("bank".into()),
            max_tokens: Some(8),
            ..QueryOptions::default()
        };
        let response = mdsa
            .query_with(query, &options, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(response.attempts, 1, "{response:?}");
        response
    };
    // The first two share the domain's prompt; it is kept after the second.
    assert_eq!(ask("What is an index fund?").usage.cached_prompt_tokens, 0);
    assert_eq!(
        ask("How do I close my account?").usage.cached_prompt_tokens,
        0
    );
    let hit = ask("Why was my card declined?");
    assert!(hit.usage.cached_prompt_tokens > 20, "{:?}", hit.usage);
    let model = hit.model.clone().unwrap();
    let figures = &mdsa.metrics().snapshot().model_residency.per_model[&model];
    assert_eq!((figures.prefix_hits, figures.prefix_misses), (1, 2));
    assert_eq!(
        figures.cached_prompt_tokens,
        hit.usage.cached_prompt_tokens as u64
    );

    mdsa.reload_domains(mdsa.domains()).unwrap();
    let after = ask("Why was my card declined?");
    assert_eq!(after.usage.cached_prompt_tokens, 0, "{:?}", after.usage);
}
