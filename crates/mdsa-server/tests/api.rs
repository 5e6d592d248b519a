//! The OpenAI-compatible API and the operator routes, over a real server with
//! the real models.

mod common;

use common::{chat, get, post_json, post_raw, shared, sse_data};
use serde_json::{Value, json};

#[test]
fn chat_completion_routes_answers_and_reports_the_decision() {
    let server = shared();
    let reply = post_json(
        &server.url("/v1/chat/completions"),
        &chat(
            "auto",
            "How do index funds compare to individual stocks?",
            12,
        ),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "smollm2");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.trim().is_empty(), "{body}");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(matches!(
        body["choices"][0]["finish_reason"].as_str(),
        Some("stop" | "length")
    ));
    let usage = &body["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 5, "{usage}");
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&completion), "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + completion
    );
    let mdsa = &body["mdsa"];
    assert_eq!(mdsa["domain"], "finance");
    assert_eq!(mdsa["outcome"], "answered");
    assert_eq!(mdsa["route"]["scores"].as_array().unwrap().len(), 4);
    // The response id is the request log's id; finance queries are logged
    // as a hash only (the default redaction of sensitive domains).
    let request_id = mdsa["request_id"].as_str().unwrap();
    assert_eq!(body["id"], format!("chatcmpl-{request_id}"));
    let logged = get(&server.url("/v1/logs?domain=finance&limit=100")).json();
    let record = logged
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == request_id)
        .cloned()
        .expect("the request is in the log");
    assert!(record["query"].is_null(), "redacted: {record}");
    assert_eq!(record["tokens_out"], usage["completion_tokens"]);
}

#[test]
fn streaming_sends_openai_chunks_with_usage_and_done() {
    let server = shared();
    let mut request = chat("auto", "What are the symptoms of the flu?", 10);
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let reply = post_json(&server.url("/v1/chat/completions"), &request);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.content_type.starts_with("text/event-stream"),
        "{}",
        reply.content_type
    );
    let data = sse_data(&reply.body);
    assert_eq!(
        data.last().map(String::as_str),
        Some("[DONE]"),
        "{}",
        reply.body
    );
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk is JSON"))
        .collect();
    let id = chunks[0]["id"].clone();
    assert!(
        chunks
            .iter()
            .all(|c| c["id"] == id && c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["mdsa"]["event"], "routed");
    assert_eq!(chunks[0]["mdsa"]["route"]["domain"], "medical");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let pieces = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert!(pieces >= 2, "streamed in pieces: {}", reply.body);
    assert!(!text.trim().is_empty());
    // The finishing chunk, then the usage chunk with no choices.
    let finish = &chunks[chunks.len() - 2];
    assert!(
        finish["choices"][0]["finish_reason"].is_string(),
        "{finish}"
    );
    assert_eq!(finish["mdsa"]["event"], "done");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    // A piece is one token or more (a multi-byte character may take several).
    let completion = usage["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((pieces as u64..=10).contains(&completion), "{usage}");
}

#[test]
fn a_domain_or_a_model_as_the_model_forces_the_answer() {
    let server = shared();
    let forced = post_json(
        &server.url("/v1/chat/completions"),
        &chat("technical", "What is compound interest?", 6),
    )
    .json();
    assert_eq!(forced["mdsa"]["domain"], "technical", "{forced}");
    assert_eq!(forced["mdsa"]["confidence"], 1.0);

    let extension = post_json(
        &server.url("/v1/chat/completions"),
        &json!({
            "model": "auto",
            "messages": [{"role": "user", "content": "What is compound interest?"}],
            "max_tokens": 6,
            "mdsa": {"domain": "support"},
        }),
    )
    .json();
    assert_eq!(extension["mdsa"]["domain"], "support", "{extension}");

    // A model id: no routing and no domain prompt, as a remote backend needs.
    let direct = post_json(
        &server.url("/v1/chat/completions"),
        &chat("smollm2", "Say hello.", 6),
    )
    .json();
    assert_eq!(direct["mdsa"]["domain"], mdsa::DIRECT_DOMAIN, "{direct}");
    assert_eq!(direct["model"], "smollm2");
    assert!(
        direct["mdsa"]["route"]["scores"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn history_and_system_messages_reach_the_model() {
    let server = shared();
    let reply = post_json(
        &server.url("/v1/chat/completions"),
        &json!({
            "model": "finance",
            "messages": [
                {"role": "system", "content": "Answer in one short sentence."},
                {"role": "user", "content": "What is a bond?"},
                {"role": "assistant", "content": "A loan you make to a government or company."},
                {"role": "user", "content": [{"type": "text", "text": "And a stock?"}]},
            ],
            "max_tokens": 8,
        }),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    // The prompt holds the domain's system prompt, the caller's, both turns
    // and the question: far more tokens than the question alone.
    assert!(
        body["usage"]["prompt_tokens"].as_u64().unwrap() > 60,
        "{body}"
    );
}

#[test]
fn abstention_is_a_refusal_with_the_closest_domain() {
    let server = shared();
    let body = post_json(
        &server.url("/v1/chat/completions"),
        &chat("auto", "zebra purple seventeen banjo", 8),
    )
    .json();
    assert_eq!(body["mdsa"]["outcome"], "abstained", "{body}");
    let message = &body["choices"][0]["message"];
    assert!(message["content"].is_null(), "{body}");
    let refusal = message["refusal"].as_str().unwrap();
    assert!(refusal.contains("No domain fits"), "{refusal}");
    assert_eq!(body["usage"]["completion_tokens"], 0);
}

#[test]
fn bad_requests_get_openai_errors_naming_the_part() {
    let server = shared();
    let url = server.url("/v1/chat/completions");
    let cases: Vec<(&str, u16, &str, Option<&str>)> = vec![
        ("{not json", 400, "invalid_json", None),
        (
            r#"{"model": "auto", "messages": [{"role": 7, "content": "x"}]}"#,
            400,
            "invalid_json",
            Some("messages[0].role"),
        ),
        (
            r#"{"model": "auto", "messages": "hi"}"#,
            400,
            "invalid_json",
            Some("messages"),
        ),
        (
            r#"{"messages": [{"role": "user", "content": "x"}]}"#,
            400,
            "invalid_json",
            None,
        ),
        (
            r#"{"model": "auto", "messages": []}"#,
            400,
            "invalid_request",
            Some("messages"),
        ),
        (
            r#"{"model": "auto", "messages": [{"role": "user", "content": "   "}]}"#,
            400,
            "invalid_request",
            Some("messages[0].content"),
        ),
        (
            r#"{"model": "auto", "messages": [{"role": "assistant", "content": "x"}]}"#,
            400,
            "invalid_request",
            Some("messages[0].role"),
        ),
        (
            r#"{"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}"#,
            400,
            "invalid_request",
            Some("messages[0].role"),
        ),
        (
            r#"{"model": "auto", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#,
            400,
            "invalid_request",
            Some("messages[0].content[0]"),
        ),
        (
            r#"{"model": "auto", "temperature": 3, "messages": [{"role": "user", "content": "x"}]}"#,
            400,
            "invalid_request",
            Some("temperature"),
        ),
        (
            r#"{"model": "auto", "top_p": 0, "messages": [{"role": "user", "content": "x"}]}"#,
            400,
            "invalid_request",
            Some("top_p"),
        ),
        (
            r#"{"model": "auto", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}"#,
            400,
            "invalid_request",
            Some("max_tokens"),
        ),
        (
            r#"{"model": "auto", "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]}"#,
            400,
            "invalid_json",
            Some("max_tokens"),
        ),
        (
            r#"{"model": "auto", "n": 3, "messages": [{"role": "user", "content": "x"}]}"#,
            400,
            "invalid_request",
            Some("n"),
        ),
        (
            r#"{"model": "gpt-5", "messages": [{"role": "user", "content": "x"}]}"#,
            404,
            "model_not_found",
            Some("model"),
        ),
        (
            r#"{"model": "auto", "mdsa": {"domain": "law"}, "messages": [{"role": "user", "content": "x"}]}"#,
            404,
            "model_not_found",
            Some("mdsa.domain"),
        ),
    ];
    for (body, status, code, param) in cases {
        let reply = post_raw(&url, body);
        assert_eq!(reply.status, status, "{body} -> {}", reply.body);
        let error = &reply.json()["error"];
        assert_eq!(error["code"], code, "{body} -> {error}");
        assert!(
            error["message"].as_str().is_some_and(|m| m.len() > 10),
            "{error}"
        );
        if let Some(param) = param {
            assert_eq!(error["param"], param, "{body} -> {error}");
        }
    }
    let unknown = get(&server.url("/v2/nothing"));
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "not_found");
}

#[test]
fn models_route_and_embeddings() {
    let server = shared();
    let models = get(&server.url("/v1/models")).json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in [
        "auto",
        "finance",
        "medical",
        "support",
        "technical",
        "smollm2",
    ] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    assert!(
        !ids.contains(&"minilm"),
        "encoders are not chat models: {ids:?}"
    );
    // A resident generator says where it runs and why.
    let _ = post_json(
        &server.url("/v1/chat/completions"),
        &chat("smollm2", "Say hello.", 2),
    );
    let models = get(&server.url("/v1/models")).json();
    let smollm2 = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "smollm2")
        .unwrap();
    assert_eq!(smollm2["mdsa"]["detail"]["device"], "cpu", "{smollm2}");
    let reason = smollm2["mdsa"]["detail"]["device_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.starts_with("auto: "), "{smollm2}");

    let route = post_json(
        &server.url("/v1/route"),
        &json!({"query": "My app crashes with a segmentation fault"}),
    );
    assert_eq!(route.status, 200, "{}", route.body);
    let route = route.json();
    assert_eq!(route["domain"], "technical");
    assert_eq!(route["scores"].as_array().unwrap().len(), 4);
    assert!(
        route["explanation"]["reason"]
            .as_str()
            .unwrap()
            .contains("technical")
    );
    let empty = post_json(&server.url("/v1/route"), &json!({"query": " "}));
    assert_eq!(
        (empty.status, empty.error_code().as_str()),
        (400, "invalid_request")
    );
    // Many queries: one batch, decisions in their order.
    let batch = post_json(
        &server.url("/v1/route"),
        &json!({"queries": [
            "My app crashes with a segmentation fault",
            "I have had a fever and a sore throat for three days",
            "Should I put my savings in index funds?",
        ]}),
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    let batch = batch.json();
    assert_eq!(batch["object"], "list", "{batch}");
    let domains: Vec<&str> = batch["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(domains, ["technical", "medical", "finance"], "{batch}");
    for (body, param) in [
        (json!({"queries": []}), "queries"),
        (json!({"queries": ["fine", " "]}), "queries[1]"),
        (json!({"query": "a", "queries": ["b"]}), "queries"),
        (json!({}), "query"),
    ] {
        let reply = post_json(&server.url("/v1/route"), &body);
        assert_eq!(reply.status, 400, "{body} -> {}", reply.body);
        assert_eq!(
            reply.json()["error"]["param"],
            param,
            "{body} -> {}",
            reply.body
        );
    }

    let embeddings = post_json(
        &server.url("/v1/embeddings"),
        &json!({"input": ["a cat", "a kitten", "tax return"], "model": "minilm"}),
    );
    assert_eq!(embeddings.status, 200, "{}", embeddings.body);
    let embeddings = embeddings.json();
    let vectors: Vec<Vec<f64>> = embeddings["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| serde_json::from_value(d["embedding"].clone()).unwrap())
        .collect();
    assert_eq!(vectors.len(), 3);
    assert_eq!(vectors[0].len(), 384);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    assert!(
        (dot(&vectors[0], &vectors[0]) - 1.0).abs() < 1e-3,
        "normalised"
    );
    assert!(dot(&vectors[0], &vectors[1]) > dot(&vectors[0], &vectors[2]) + 0.2);
    let packed = post_json(
        &server.url("/v1/embeddings"),
        &json!({"input": "a cat", "encoding_format": "base64"}),
    )
    .json();
    let packed = packed["data"][0]["embedding"]
        .as_str()
        .expect("base64 text");
    assert_eq!(
        packed.len(),
        (384 * 4usize).div_ceil(3) * 4,
        "384 f32 as base64"
    );
    let bad = post_json(&server.url("/v1/embeddings"), &json!({"input": []}));
    assert_eq!(
        (bad.status, bad.json()["error"]["param"].clone()),
        (400, json!("input"))
    );
}

#[test]
fn metrics_cover_requests_routing_models_and_the_queue() {
    let server = shared();
    let reply = post_json(
        &server.url("/v1/chat/completions"),
        &chat("auto", "How do I reset my password?", 4),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let metrics = get(&server.url("/metrics"));
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.content_type.contains("openmetrics"),
        "{}",
        metrics.content_type
    );
    let text = metrics.body;
    for name in [
        "mdsa_requests_total{domain=\"support\",model=\"smollm2\",status=\"completed\"}",
        "mdsa_request_duration_seconds_bucket{",
        "mdsa_time_to_first_token_seconds_bucket{",
        "mdsa_tokens_in_total{",
        "mdsa_tokens_out_total{",
        "mdsa_routing_confidence_bucket{",
        "mdsa_model_loads_total{model=\"smollm2\"}",
        "mdsa_model_evictions_total",
        "mdsa_model_resident_bytes{",
        "mdsa_device_resident_bytes{device=\"cpu\"}",
        "mdsa_queue_depth ",
        "mdsa_inflight_requests ",
        "mdsa_request_log_write_errors_total ",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.trim_end().ends_with("# EOF"));
}

#[test]
fn logs_filter_and_export_csv() {
    let server = shared();
    let reply = post_json(
        &server.url("/v1/chat/completions"),
        &chat("auto", "My package never arrived, can I get a refund?", 4),
    );
    assert_eq!(reply.status, 200);
    let records = get(&server.url("/v1/logs?domain=support&limit=50")).json();
    let records = records.as_array().unwrap();
    assert!(!records.is_empty());
    assert!(
        records.iter().all(|r| r["domain"] == "support"),
        "{records:?}"
    );
    let csv = get(&server.url("/v1/logs?domain=support&format=csv"));
    assert!(csv.content_type.starts_with("text/csv"));
    assert!(csv.body.starts_with("id,timestamp,query"), "{}", csv.body);
    assert!(csv.body.contains("package never arrived"));
    for (query, param) in [
        ("status=lost", "status"),
        ("format=xml", "format"),
        ("since=yesterday", "since"),
        ("min_ms=-5", "min_ms"),
    ] {
        let bad = get(&server.url(&format!("/v1/logs?{query}")));
        assert_eq!(bad.status, 400, "{query}: {}", bad.body);
        assert_eq!(bad.json()["error"]["param"], param, "{query}");
    }
    let unknown = get(&server.url("/v1/logs?colour=red"));
    assert_eq!(unknown.status, 400, "{}", unknown.body);
}

#[test]
fn health_ready_and_stats() {
    let server = shared();
    let health = get(&server.url("/health")).json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    // The welcome page names the version before any script runs.
    let page = get(&server.url("/"));
    assert_eq!(page.status, 200);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        page.body
            .contains(&format!("<title>mdsa {version} · dashboard</title>"))
            && page.body.contains(&format!(">v{version}</span>")),
        "{}",
        page.body
    );
    let ready = get(&server.url("/ready"));
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (200, json!("ready"))
    );
    let stats = get(&server.url("/v1/stats")).json();
    assert_eq!(stats["domains"].as_array().unwrap().len(), 4);
    assert!(stats["metrics"]["total"].is_object(), "{stats}");
    assert!(
        stats["resident"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "minilm")
    );
    assert!(stats["limits"]["max_concurrent"].as_u64().unwrap() >= 1);
}
