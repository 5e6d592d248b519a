//! `mdsa route` and `mdsa routes eval|fit` with the real router encoder.

// A skipped test says why on stderr.
#![allow(clippy::print_stderr)]

mod common;
use std::path::PathBuf;

use common::{encoder_missing, failure, json, mdsa_in, sandbox, success};

const DOMAINS: [&str; 4] = ["finance", "medical", "support", "technical"];

/// A file of the repository's data.
fn repo_file(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .display()
        .to_string()
}

#[test]
fn route_json_names_the_domain() {
    skip_if!(encoder_missing());
    let home = sandbox();
    let decision = json(&mdsa_in(
        &home,
        &["route", "--json", "How do I reset my password?"],
    ));
    assert_eq!(decision["domain"], "support", "{decision:#}");
    assert_eq!(decision["abstained"], false);
    // Routing alone answers nothing and logs nothing.
    let logged = json(&mdsa_in(&home, &["logs", "--format", "json"]));
    assert_eq!(logged, serde_json::json!([]));

    let text = success(&mdsa_in(&home, &["route", "How do I reset my password?"]));
    assert!(text.starts_with("domain: support"), "{text}");
}

#[test]
fn route_json_abstains_out_of_domain_with_every_score() {
    skip_if!(encoder_missing());
    let home = sandbox();
    let decision = json(&mdsa_in(
        &home,
        &["route", "--json", "What's a good recipe for banana bread?"],
    ));
    assert_eq!(decision["domain"], serde_json::Value::Null, "{decision:#}");
    assert_eq!(decision["abstained"], true);
    assert!(decision["confidence"].is_number(), "{decision:#}");
    let scores = decision["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 4, "{decision:#}");
    let mut ids: Vec<&str> = scores
        .iter()
        .map(|s| s["domain"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, DOMAINS);
}

#[test]
fn route_input_prints_one_json_line_per_query() {
    skip_if!(encoder_missing());
    let home = sandbox();
    let input = home.path().join("queries.jsonl");
    // Unlabelled and labelled lines alike; a blank line is skipped.
    std::fs::write(
        &input,
        concat!(
            "{\"text\": \"I have a fever and a headache\"}\n",
            "{\"text\": \"What's a good recipe for banana bread?\", \"domain\": null}\n",
            "\n",
            "{\"text\": \"How do I reset my password?\", \"id\": 3}\n",
        ),
    )
    .unwrap();
    let stdout = success(&mdsa_in(
        &home,
        &["route", "--input", input.to_str().unwrap()],
    ));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let expected = [Some("medical"), None, Some("support")];
    for (line, expected) in lines.iter().zip(expected) {
        let decision: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(decision["domain"].as_str(), expected, "{line}");
    }

    // A line without text names the file and the line.
    std::fs::write(&input, "{\"text\": \"fine\"}\n{\"query\": \"oops\"}\n").unwrap();
    let error = failure(&mdsa_in(
        &home,
        &["route", "--input", input.to_str().unwrap()],
    ));
    assert!(error.contains("queries.jsonl:2"), "{error}");
    assert!(error.contains("\"text\""), "{error}");
}

#[test]
fn routes_eval_reports_accuracy_per_domain_and_confusion() {
    skip_if!(encoder_missing());
    let home = sandbox();
    let report = json(&mdsa_in(
        &home,
        &[
            "routes",
            "eval",
            "--data",
            &repo_file("data/routing/eval.jsonl"),
            "--json",
        ],
    ));
    assert_eq!(report["total"], 250, "{report:#}");
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.85, "accuracy {accuracy}");
    let per_domain = report["per_domain"].as_array().unwrap();
    for id in DOMAINS {
        assert!(
            per_domain.iter().any(|d| d["label"] == id),
            "no entry for {id}: {report:#}"
        );
    }
    let labels = report["confusion"]["labels"].as_array().unwrap();
    let counts = report["confusion"]["counts"].as_array().unwrap();
    assert_eq!(labels.len(), 5, "four domains and none: {report:#}");
    assert_eq!(counts.len(), labels.len());
    let sum: u64 = counts
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(sum, 250);
}

/// The router's `min_score` in a domains file.
fn min_score(ron: &str) -> f64 {
    let line = ron
        .lines()
        .find_map(|l| l.trim().strip_prefix("min_score:"))
        .unwrap_or_else(|| panic!("no min_score in {ron}"));
    line.trim().trim_end_matches(',').parse().unwrap()
}

#[test]
fn routes_fit_repairs_a_bad_threshold_in_a_domains_file() {
    skip_if!(encoder_missing());
    let home = sandbox();
    let copy = home.path().join("domains.ron");
    let exported = success(&mdsa_in(&home, &["domains", "export"]));
    let bad = exported.replacen(
        &format!("min_score: {}", min_score(&exported)),
        "min_score: 0.9",
        1,
    );
    assert_eq!(min_score(&bad), 0.9);
    std::fs::write(&copy, bad).unwrap();
    let copy_arg = copy.to_str().unwrap();
    // The exported file reads back as the same four domains.
    let listed = success(&mdsa_in(&home, &["--domains", copy_arg, "domains", "list"]));
    for id in DOMAINS {
        assert!(listed.contains(id), "{listed}");
    }
    assert!(listed.contains("domains.ron"), "{listed}");

    let calibration = repo_file("crates/mdsa-domains/data/calibration.jsonl");
    let fitted = json(&mdsa_in(
        &home,
        &[
            "--domains",
            copy_arg,
            "routes",
            "fit",
            "--data",
            &calibration,
            "--json",
        ],
    ));
    assert_eq!(fitted["written"], true, "{fitted:#}");
    let after = min_score(&std::fs::read_to_string(&copy).unwrap());
    assert!(after < 0.9, "min_score still {after}");

    let report = json(&mdsa_in(
        &home,
        &[
            "--domains",
            copy_arg,
            "routes",
            "eval",
            "--data",
            &repo_file("data/routing/eval.jsonl"),
            "--json",
        ],
    ));
    assert_eq!(report["total"], 250);
    assert!(report["accuracy"].as_f64().unwrap() >= 0.85, "{report:#}");
}

#[test]
fn routes_fit_without_a_domains_file_says_to_pass_one() {
    // Fails before any model loads, so this needs no models.
    let home = sandbox();
    let calibration = repo_file("crates/mdsa-domains/data/calibration.jsonl");
    let error = failure(&mdsa_in(&home, &["routes", "fit", "--data", &calibration]));
    assert!(error.contains("--domains"), "{error}");
}

#[test]
fn routes_tune_writes_an_encoder_that_the_domains_file_then_routes_with() {
    skip_if!(encoder_missing());
    let home = sandbox();
    let copy = home.path().join("domains.ron");
    std::fs::write(&copy, success(&mdsa_in(&home, &["domains", "export"]))).unwrap();
    let copy_arg = copy.to_str().unwrap();
    let tuned = json(&mdsa_in(
        &home,
        &[
            "--domains",
            copy_arg,
            "routes",
            "tune",
            "--epochs",
            "3",
            "--json",
        ],
    ));
    let report = &tuned["tune"];
    let (before, after) = (
        report["before"].as_f64().unwrap(),
        report["after"].as_f64().unwrap(),
    );
    assert!(
        (0.0..=1.0).contains(&before) && after >= before,
        "{tuned:#}"
    );
    assert!(report["heldout"].as_u64().unwrap() >= 8, "{tuned:#}");
    assert_eq!(report["epochs"].as_array().unwrap().len(), 3, "{tuned:#}");
    let Some(out) = report["out"].as_str() else {
        // No epoch beat the base: nothing written, the file untouched.
        assert!(tuned["domains_file"].is_null(), "{tuned:#}");
        return;
    };
    assert!(out.ends_with("domains-encoder"), "{out}");
    let file = std::fs::read_to_string(&copy).unwrap();
    assert!(
        file.contains("encoder:") && file.contains("domains-encoder"),
        "{file}"
    );
    // The domains file now loads the tuned encoder, and it routes.
    let routed = json(&mdsa_in(
        &home,
        &[
            "--domains",
            copy_arg,
            "route",
            "I have a fever and a headache",
            "--json",
        ],
    ));
    assert_eq!(routed["domain"], "medical", "{routed:#}");
}
