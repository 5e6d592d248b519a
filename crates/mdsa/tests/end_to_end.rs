//! The main job through the facade, with the real models: route, load, answer,
//! validate, log, measure. Skips (with a message) when `cargo xtask
//! fetch-models` has not put the models in the local cache.

// A skipped test says why on stderr.
#![allow(clippy::print_stderr)]

mod common;

use std::ops::ControlFlow;
use std::time::Duration;

use common::system;
use mdsa::bus::{RequestState, SubscribeOptions, WorkflowEvent};
use mdsa::monitor::{LogFilter, RequestStatus};
use mdsa::{Mdsa, Outcome, QueryEvent, QueryOptions};

/// Short answers keep the tests quick; validation still applies.
fn short() -> QueryOptions {
    QueryOptions {
        max_tokens: Some(48),
        ..QueryOptions::default()
    }
}

#[test]
fn each_domain_gets_its_queries_and_a_validated_answer() {
    let Some(mdsa) = system() else { return };
    let cases = [
        (
            "finance",
            "Should I pay off my credit card debt before investing in index funds?",
        ),
        (
            "medical",
            "I have a fever and a headache. What should I do?",
        ),
        (
            "support",
            "I was charged twice for my subscription this month, how do I get a refund?",
        ),
        (
            "technical",
            "How do I fix a segmentation fault in my C program?",
        ),
    ];
    for (expected, query) in cases {
        let mut streamed = String::new();
        let mut attempts = 0;
        let response = mdsa
            .query_with(query, &short(), &mut |event| {
                match event {
                    QueryEvent::Attempt { .. } => {
                        attempts += 1;
                        streamed.clear();
                    }
                    QueryEvent::Text(piece) => streamed.push_str(&piece),
                    _ => {}
                }
                ControlFlow::Continue(())
            })
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(
            response.domain.as_deref(),
            Some(expected),
            "{query}: {:?}",
            response.route
        );
        assert_eq!(
            response.outcome,
            Outcome::Answered,
            "{query}: {:?}",
            response.verdict
        );
        assert!(response.verdict.as_ref().is_some_and(|v| v.passed));
        assert!(!response.text.trim().is_empty());
        assert_eq!(streamed, response.text, "the stream is the answer");
        assert_eq!(attempts, response.attempts);
        assert!(response.usage.completion_tokens > 0 && response.usage.completion_tokens <= 48);
        assert!(response.confidence > 0.0 && response.confidence <= 1.0);
        assert_eq!(
            response.model.as_deref(),
            Some(mdsa::config::DEFAULT_GENERATOR_ID)
        );
        let record = mdsa
            .logger()
            .query(&LogFilter::new())
            .into_iter()
            .find(|r| r.id == response.request_id)
            .expect("every request is logged");
        assert_eq!(record.status, RequestStatus::Completed);
        assert_eq!(record.domain.as_deref(), Some(expected));
        assert_eq!(record.tokens_out as usize, response.usage.completion_tokens);
    }
    let snapshot = mdsa.metrics().snapshot();
    for domain in ["finance", "medical", "support", "technical"] {
        assert!(
            snapshot.per_domain[domain].requests >= 1,
            "{domain} counted"
        );
    }
    let text = mdsa.metrics().encode_prometheus().expect("prometheus text");
    assert!(text.contains("mdsa_requests_total{"), "{text}");
    assert!(text.contains("domain=\"medical\""));
}

#[test]
fn an_out_of_domain_query_abstains_without_asking_a_model() {
    let Some(mdsa) = system() else { return };
    for query in [
        "What's a good recipe for banana bread?",
        "Who won the football World Cup in 2014?",
    ] {
        let response = mdsa
            .query_with(query, &short(), &mut |_| ControlFlow::Continue(()))
            .expect("abstaining is not an error");
        assert_eq!(
            response.outcome,
            Outcome::Abstained,
            "{query}: {:?}",
            response.route
        );
        assert_eq!(response.domain, None);
        assert!(response.route.abstained);
        assert!(response.text.is_empty());
        assert_eq!(response.model, None);
        assert_eq!(response.attempts, 0);
        let record = mdsa
            .logger()
            .query(&LogFilter::new().status(RequestStatus::Abstained))
            .into_iter()
            .find(|r| r.id == response.request_id)
            .expect("abstentions are logged");
        assert_eq!(record.tokens_out, 0);
    }
}

#[test]
fn every_request_walks_the_workflow_on_the_bus() {
    let Some(mdsa) = system() else { return };
    let events = mdsa
        .bus()
        .subscribe::<WorkflowEvent>(SubscribeOptions::default());
    let response = mdsa
        .query_with(
            "My package says delivered but I never received it.",
            &short(),
            &mut |_| ControlFlow::Continue(()),
        )
        .expect("answered");
    let mut states = Vec::new();
    while let Ok(event) = events.recv_timeout(Duration::from_millis(200)) {
        if event.transition.request_id == response.request_id {
            states.push(event.transition.to.clone());
        }
    }
    let expected_end = match response.outcome {
        Outcome::Answered => RequestState::Completed,
        other => panic!("expected an answer, got {other:?}"),
    };
    assert_eq!(
        states.first(),
        Some(&RequestState::Classifying),
        "{states:?}"
    );
    assert_eq!(states.last(), Some(&expected_end), "{states:?}");
    for state in [
        RequestState::Loading,
        RequestState::Executing,
        RequestState::Validating,
    ] {
        assert!(states.contains(&state), "{state:?} missing from {states:?}");
    }
}

#[test]
fn bad_requests_get_clear_errors_and_are_logged() {
    let Some(mdsa) = system() else { return };
    let error = mdsa.query("   ").expect_err("empty query");
    assert!(error.to_string().contains("empty"), "{error}");
    let forced = QueryOptions {
        domain: Some("astrology".into()),
        ..short()
    };
    let error = mdsa
        .query_with(
            "Will Mercury retrograde ruin my week?",
            &forced,
            &mut |_| ControlFlow::Continue(()),
        )
        .expect_err("unknown domain");
    let message = error.to_string();
    assert!(
        message.contains("astrology") && message.contains("medical"),
        "{message}"
    );
    let failed = mdsa
        .logger()
        .query(&LogFilter::new().status(RequestStatus::Failed));
    assert!(
        failed
            .iter()
            .any(|r| r.error.as_deref().is_some_and(|e| e.contains("astrology")))
    );
}

#[test]
fn an_unwritable_log_file_loses_no_answer() {
    if system().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, "").expect("file written");
    let mut config = mdsa::SystemConfig::default();
    config.logging.file = Some(not_a_dir.join("requests.jsonl"));
    let mdsa = Mdsa::builder().config(config).build().expect("built");
    // Out of domain: no generator needed, but the request is logged all the same.
    let response = mdsa
        .query("What's a good recipe for banana bread?")
        .expect("answered despite the log");
    assert_eq!(response.outcome, Outcome::Abstained);
    let error = mdsa.last_log_error().expect("the failure is kept");
    assert!(error.contains("requests.jsonl"), "{error}");
    let kept = mdsa.logger().query(&LogFilter::new());
    assert!(
        kept.iter().any(|r| r.id == response.request_id),
        "kept in memory"
    );
    let text = mdsa.metrics().encode_prometheus().expect("prometheus text");
    assert!(
        text.lines()
            .any(|line| line == "mdsa_request_log_write_errors_total 1"),
        "{text}"
    );
}
