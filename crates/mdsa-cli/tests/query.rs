//! `mdsa query` and `mdsa chat` with the real models, and what they leave in
//! the request log (`mdsa logs`, `mdsa metrics`). Each test has its own home,
//! so logs and caches never mix; answers are kept short (`--max-tokens`).

// A skipped test says why on stderr.
#![allow(clippy::print_stderr)]

mod common;
use common::{
    encoder_missing, failure, json, log_file, mdsa_in, mdsa_in_with, models_missing, sandbox,
    success,
};

#[test]
fn a_json_answer_is_logged_and_measured() {
    skip_if!(models_missing());
    let home = sandbox();
    let answer = json(&mdsa_in(
        &home,
        &[
            "query",
            "--json",
            "--max-tokens",
            "24",
            "I have a fever and a headache",
        ],
    ));
    assert_eq!(answer["domain"], "medical", "{answer:#}");
    assert_eq!(answer["outcome"], "answered", "{answer:#}");
    assert!(
        !answer["text"].as_str().unwrap().trim().is_empty(),
        "{answer:#}"
    );
    let tokens = answer["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=24).contains(&tokens), "{tokens} tokens");
    assert_eq!(answer["verdict"]["passed"], true, "{answer:#}");
    assert_eq!(answer["model"], "smollm2");
    // Where it ran, and why (the CPU here: no GPU backend or GPU).
    assert_eq!(answer["device"], "cpu", "{answer:#}");
    let reason = answer["device_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("auto: "), "{answer:#}");
    assert!(answer["timings"]["total_ms"].as_f64().unwrap() > 0.0);
    let id = answer["request_id"].as_str().unwrap();
    assert!(!id.is_empty());

    // The request log in this home has exactly that request.
    assert!(log_file(&home).exists(), "no request log was written");
    let logged = json(&mdsa_in(&home, &["logs", "--format", "json"]));
    let records = logged.as_array().unwrap();
    assert_eq!(records.len(), 1, "{logged:#}");
    assert_eq!(records[0]["id"], id);
    assert_eq!(records[0]["status"], "completed");
    assert_eq!(records[0]["domain"], "medical");
    // Medical queries are stored as a hash only.
    assert_eq!(records[0]["query"], serde_json::Value::Null);

    let csv = success(&mdsa_in(&home, &["logs", "--format", "csv"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("id,timestamp,"), "{csv}");
    assert!(lines[1].starts_with(&format!("{id},")), "{csv}");

    let table = success(&mdsa_in(&home, &["logs"]));
    assert!(table.contains(id), "{table}");

    let prometheus = success(&mdsa_in(&home, &["metrics", "--prometheus"]));
    assert!(
        prometheus
            .lines()
            .any(|l| l.starts_with("mdsa_requests_total{")
                && l.contains("domain=\"medical\"")
                && l.contains("status=\"completed\"")
                && l.ends_with(" 1")),
        "{prometheus}"
    );
    let metrics = json(&mdsa_in(&home, &["metrics", "--json"]));
    assert_eq!(metrics["total"]["requests"], 1, "{metrics:#}");
}

#[test]
fn a_streamed_answer_goes_to_stdout_and_the_route_to_stderr() {
    skip_if!(models_missing());
    let home = sandbox();
    let output = mdsa_in(
        &home,
        &[
            "query",
            "--max-tokens",
            "24",
            "I have a fever and a headache",
        ],
    );
    let stdout = success(&output);
    assert!(!stdout.trim().is_empty(), "no answer on stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("→ medical"), "{stderr}");
    assert!(stderr.contains("✓ medical"), "{stderr}");
    // Nothing but the answer on stdout: no route, no summary.
    assert!(!stdout.contains('→') && !stdout.contains('✓'), "{stdout}");
}

#[test]
fn an_out_of_domain_query_abstains_without_failing() {
    // No model answers, so only the router's encoder is needed.
    skip_if!(encoder_missing());
    let home = sandbox();
    let query = "What's a good recipe for banana bread?";
    let answer = json(&mdsa_in(&home, &["query", "--json", query]));
    assert_eq!(answer["outcome"], "abstained", "{answer:#}");
    assert_eq!(answer["domain"], serde_json::Value::Null);
    assert_eq!(answer["text"], "");
    assert_eq!(answer["model"], serde_json::Value::Null);

    // Streaming, the abstention is explained on stderr, and the exit is still 0.
    let output = mdsa_in(&home, &["query", query]);
    assert_eq!(success(&output), "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("→ no domain") && stderr.contains("abstained"),
        "{stderr}"
    );

    let logged = json(&mdsa_in(&home, &["logs", "--format", "json"]));
    let records = logged.as_array().unwrap();
    assert_eq!(records.len(), 2, "{logged:#}");
    assert!(records.iter().all(|r| r["status"] == "abstained"));
}

#[test]
fn an_empty_query_is_one_clear_error() {
    // Rejected before any model loads, so this needs no models.
    let home = sandbox();
    for query in ["", "   "] {
        for command in ["query", "route"] {
            let error = failure(&mdsa_in(&home, &[command, query]));
            assert!(error.contains("query is empty"), "{error}");
        }
    }
}

#[test]
fn chat_answers_in_a_chosen_domain() {
    skip_if!(models_missing());
    let home = sandbox();
    let output = mdsa_in_with(
        &home,
        &["chat", "--max-tokens", "16"],
        &[],
        Some("/domain finance\nWhat is an index fund?\n/quit\n"),
    );
    let stdout = success(&output);
    assert!(!stdout.trim().is_empty(), "no answer on stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("answering in finance"), "{stderr}");
    assert!(stderr.contains("→ finance"), "{stderr}");
    let logged = json(&mdsa_in(&home, &["logs", "--format", "json"]));
    assert_eq!(logged[0]["domain"], "finance", "{logged:#}");
}

#[test]
fn chat_survives_an_unknown_domain_and_ends_at_end_of_input() {
    skip_if!(encoder_missing());
    let home = sandbox();
    let output = mdsa_in_with(
        &home,
        &["chat"],
        &[],
        Some("/domain astrology\nWill I be rich?\n"),
    );
    // The bad turn is reported; the chat goes on and ends at end of input.
    assert_eq!(success(&output), "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: ") && stderr.contains("unknown domain \"astrology\""),
        "{stderr}"
    );
}

#[test]
fn a_query_that_is_not_utf8_is_one_clear_error() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    // Rejected while reading the arguments, before any model loads.
    let home = sandbox();
    for command in ["query", "route"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mdsa"))
            .arg(command)
            .arg(OsStr::from_bytes(b"Is my \xff\xfe mortgage fixed?"))
            .current_dir(home.path())
            .env("HOME", home.path())
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("the mdsa binary runs");
        // A usage error, as clap reports them: exit 2, the reason first, then
        // the usage; no panic, no answer.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.starts_with("error: invalid UTF-8 was detected in one or more arguments"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("Usage: mdsa {command}")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}
