//! The clients: threads sending requests back to back over blocking HTTP,
//! each request's latency and outcome recorded; and the server's own count
//! of requests, read from `/metrics`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::args::Mode;
use super::stats::{Outcome, Sample};

/// Longest a single request may take before it counts as lost: a spawned
/// server's queue timeout plus a generation.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(super::server::QUEUE_TIMEOUT_SECS + 60);

/// An HTTP client for loopback: HTTP errors are answers, not `Err`; no proxy
/// from the environment and no redirects, so no request leaves the machine.
pub(super) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .proxy(None)
        .max_redirects(0)
        .build()
        .into()
}

/// What every request of a run sends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Load<'a> {
    pub(super) url: &'a str,
    pub(super) mode: Mode,
    pub(super) max_tokens: u32,
    pub(super) queries: &'a [String],
}

/// The path and JSON body of one request.
pub(super) fn request(mode: Mode, query: &str, max_tokens: u32) -> (&'static str, Value) {
    match mode {
        Mode::Route => ("/v1/route", json!({ "query": query })),
        Mode::Chat => (
            "/v1/chat/completions",
            json!({
                "model": "auto",
                "messages": [{ "role": "user", "content": query }],
                "max_tokens": max_tokens,
            }),
        ),
    }
}

/// Sends one request and records how it ended.
pub(super) fn send(agent: &ureq::Agent, load: &Load<'_>, query: &str) -> Sample {
    let (path, body) = request(load.mode, query, load.max_tokens);
    let started = Instant::now();
    let result = agent
        .post(format!("{}{path}", load.url))
        .header("content-type", "application/json")
        .send(body.to_string())
        .and_then(|mut response| {
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string()?;
            Ok((status, text))
        });
    let latency = started.elapsed();
    let outcome = match result {
        Ok((status, text)) => outcome(load.mode, status, &text),
        Err(ureq::Error::Timeout(_)) => Outcome::Transport("timeout".into()),
        Err(ureq::Error::Io(e)) => Outcome::Transport(format!("io {:?}", e.kind())),
        Err(other) => Outcome::Transport(other.to_string()),
    };
    Sample { latency, outcome }
}

/// Reads an answer: a 2xx with the body this route promises, or an error
/// named by its status and OpenAI-style `error.code`.
pub(super) fn outcome(mode: Mode, status: u16, body: &str) -> Outcome {
    let value: Option<Value> = serde_json::from_str(body).ok();
    if !(200..300).contains(&status) {
        let code = value
            .as_ref()
            .and_then(|v| v["error"]["code"].as_str())
            .unwrap_or("-")
            .to_string();
        return Outcome::Http { status, code };
    }
    let answer = value.and_then(|v| match mode {
        Mode::Route => Some(Outcome::Ok {
            completion_tokens: 0,
            abstained: v["abstained"].as_bool()?,
            first_token: None,
        }),
        Mode::Chat => Some(Outcome::Ok {
            completion_tokens: v["usage"]["completion_tokens"].as_u64()?,
            abstained: v["mdsa"]["outcome"].as_str() == Some("abstained"),
            first_token: v["mdsa"]["timings"]["first_token_ms"]
                .as_f64()
                .and_then(|ms| Duration::try_from_secs_f64(ms / 1e3).ok()),
        }),
    });
    answer.unwrap_or_else(|| Outcome::Http {
        status,
        code: "unexpected_body".into(),
    })
}

/// Runs `clients` threads sending back to back until `duration` passes or
/// `max_requests` are sent; queries go round-robin over all clients. Client
/// `k` starts `k / clients` of the way through `ramp_up`. Returns every
/// request and the wall time until the last answer.
pub(super) fn run(
    load: &Load<'_>,
    clients: usize,
    duration: Duration,
    max_requests: u64,
    ramp_up: Duration,
) -> anyhow::Result<(Vec<Sample>, Duration)> {
    let next = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + duration;
    let next = &next;
    let per_client = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|k| {
                let start = started + ramp_up.mul_f64(k as f64 / clients as f64);
                scope.spawn(move || {
                    std::thread::sleep(start.saturating_duration_since(Instant::now()));
                    let agent = agent();
                    let mut samples = Vec::new();
                    while Instant::now() < deadline {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= max_requests {
                            break;
                        }
                        let query = &load.queries[(i % load.queries.len() as u64) as usize];
                        samples.push(send(&agent, load, query));
                    }
                    samples
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join())
            .collect::<Result<Vec<_>, _>>()
    });
    let wall = started.elapsed();
    let per_client = per_client.map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
    Ok((per_client.into_iter().flatten().collect(), wall))
}

/// The server's `mdsa_requests_total`, summed over every label set.
pub(super) fn server_requests_total(agent: &ureq::Agent, url: &str) -> anyhow::Result<u64> {
    let mut response = agent
        .get(format!("{url}/metrics"))
        .call()
        .with_context(|| format!("GET {url}/metrics"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    if status != 200 {
        bail!("GET {url}/metrics answered {status}");
    }
    let total = counter_sum(&text, "mdsa_requests_total");
    // Counters of whole requests are integers well within f64's exact range.
    Ok(total.round() as u64)
}

/// Sums a metric's samples in Prometheus text (`name{labels} value` lines).
pub(super) fn counter_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            let value = match rest.rfind('}') {
                Some(end) => &rest[end + 1..],
                None => rest,
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// The `text` of every line of a routing evaluation file
/// (`{"text": ..., "domain": ...}` per line).
pub(super) fn parse_queries(text: &str, origin: &str) -> anyhow::Result<Vec<String>> {
    let mut queries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{origin}:{}: not a JSON object", n + 1))?;
        let Some(query) = value["text"].as_str() else {
            bail!("{origin}:{}: expected a \"text\" string", n + 1);
        };
        queries.push(query.to_string());
    }
    if queries.is_empty() {
        bail!("{origin}: no queries");
    }
    Ok(queries)
}

pub(super) fn read_queries(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_queries(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies() {
        let (path, body) = request(Mode::Route, "Is it \"safe\"?", 16);
        assert_eq!(path, "/v1/route");
        assert_eq!(body, json!({ "query": "Is it \"safe\"?" }));
        let (path, body) = request(Mode::Chat, "Hi", 8);
        assert_eq!(path, "/v1/chat/completions");
        assert_eq!(body["model"], "auto");
        assert_eq!(
            body["messages"][0],
            json!({ "role": "user", "content": "Hi" })
        );
        assert_eq!(body["max_tokens"], 8);
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn answers_and_errors_are_told_apart() {
        let chat = r#"{"usage":{"prompt_tokens":54,"completion_tokens":16},"mdsa":{"outcome":"answered","timings":{"first_token_ms":12.5}}}"#;
        assert_eq!(
            outcome(Mode::Chat, 200, chat),
            Outcome::Ok {
                completion_tokens: 16,
                abstained: false,
                first_token: Some(Duration::from_micros(12_500)),
            }
        );
        let abstained = r#"{"usage":{"completion_tokens":0},"mdsa":{"outcome":"abstained"}}"#;
        assert_eq!(
            outcome(Mode::Chat, 200, abstained),
            Outcome::Ok {
                completion_tokens: 0,
                abstained: true,
                first_token: None,
            }
        );
        assert_eq!(
            outcome(Mode::Route, 200, r#"{"abstained":true,"domain":null}"#),
            Outcome::Ok {
                completion_tokens: 0,
                abstained: true,
                first_token: None,
            }
        );
        let full = r#"{"error":{"message":"...","type":"rate_limit_error","param":null,"code":"queue_full"}}"#;
        assert_eq!(
            outcome(Mode::Chat, 429, full),
            Outcome::Http {
                status: 429,
                code: "queue_full".into()
            }
        );
        assert_eq!(
            outcome(Mode::Route, 502, "<html>bad gateway</html>"),
            Outcome::Http {
                status: 502,
                code: "-".into()
            }
        );
        assert_eq!(
            outcome(Mode::Chat, 200, "{}"),
            Outcome::Http {
                status: 200,
                code: "unexpected_body".into()
            }
        );
    }

    #[test]
    fn request_counter_is_summed_over_labels() {
        let text = "\
# HELP mdsa_requests Requests by routed domain, model and final status.
# TYPE mdsa_requests counter
mdsa_requests_total{domain=\"none\",model=\"none\",status=\"abstained\"} 3
mdsa_requests_total{domain=\"technical\",model=\"smollm2\",status=\"completed\"} 12
mdsa_requests_total{domain=\"technical\",model=\"smollm2\",status=\"failed\"} 0
mdsa_requests_totally_different 100
mdsa_request_duration_seconds_count{domain=\"none\",model=\"none\"} 3
# EOF
";
        assert_eq!(counter_sum(text, "mdsa_requests_total"), 15.0);
        assert_eq!(counter_sum("plain_total 2.5\n", "plain_total"), 2.5);
        assert_eq!(counter_sum("", "mdsa_requests_total"), 0.0);
    }

    #[test]
    fn queries_come_from_the_text_field() {
        let text = "{\"text\": \"How do I create an index?\", \"domain\": \"technical\"}\n\n{\"text\": \"Movies like Inception?\", \"domain\": null}\n";
        assert_eq!(
            parse_queries(text, "eval.jsonl").unwrap(),
            ["How do I create an index?", "Movies like Inception?"]
        );
        let error = parse_queries("{\"query\": \"x\"}\n", "eval.jsonl").unwrap_err();
        assert!(error.to_string().contains("eval.jsonl:1"), "{error}");
        assert!(parse_queries("", "eval.jsonl").is_err());
    }

    #[test]
    fn the_project_eval_file_reads() {
        let path = crate::cmd::workspace_root().join("data/routing/eval.jsonl");
        assert!(read_queries(&path).unwrap().len() >= 100);
    }
}
