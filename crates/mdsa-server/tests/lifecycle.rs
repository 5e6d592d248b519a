//! Limits, cancellation, hot reload and graceful shutdown, each on a server
//! of its own over the real models.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    TestServer, build_mdsa, chat, get, log_records, post_json, post_raw, stats, wait_for,
};
use mdsa::SystemConfig;
use mdsa::domains::{DomainConfig, DomainRegistry};
use mdsa_server::{Limits, ServerConfig};
use serde_json::json;

/// A prompt a small model answers at length: it holds its slot for the whole
/// `max_tokens`, so the tests can see what happens around a busy server.
/// A question SmolLM2 answers at length in the finance domain (to its 200
/// token cap), so that a request holds its slot for a while.
const LONG_ANSWER: &str =
    "List fifty common personal finance terms, each with a one-sentence definition.";

/// Opens a streaming chat request on a raw socket and returns the reader
/// positioned after the headers, so a test can read some and hang up.
fn open_stream(server: &TestServer, model: &str, max_tokens: u32) -> BufReader<TcpStream> {
    let mut body = chat(model, LONG_ANSWER, max_tokens);
    body["stream"] = json!(true);
    let body = body.to_string();
    let mut socket = TcpStream::connect(server.addr).expect("connect");
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    )
    .expect("send");
    let mut reader = BufReader::new(socket);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    assert!(status.contains(" 200 "), "{status}");
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).expect("header");
        if header == "\r\n" {
            return reader;
        }
    }
}

/// Reads until a chunk carries answer text.
fn read_until_text(reader: &mut BufReader<TcpStream>) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "stream ended early"
        );
        if line.contains("\"content\":\"") && !line.contains("\"content\":\"\"") {
            return;
        }
    }
}

#[test]
fn a_full_queue_gets_429_and_a_long_wait_503() {
    let limits = Limits {
        max_concurrent: 1,
        max_queue: 1,
        // Well inside the slot holder's answer (200 tokens).
        queue_timeout: Duration::from_millis(300),
        max_tokens: 400,
        ..Limits::default()
    };
    let server = TestServer::start(
        build_mdsa(SystemConfig::default()),
        ServerConfig {
            limits,
            ..ServerConfig::default()
        },
    );
    // One request holds the only slot...
    let mut busy = open_stream(&server, "finance", 400);
    read_until_text(&mut busy);
    assert_eq!(stats(&server)["in_flight"], 1);
    // ...one waits in the only queue place...
    let url = server.url("/v1/route");
    let waiting = std::thread::spawn(move || {
        let reply = post_json(&url, &json!({"query": "What is an index fund?"}));
        (reply.status, reply.error_code(), Instant::now())
    });
    assert!(
        wait_for(Duration::from_secs(10), || (stats(&server)["queue_depth"]
            == 1)
            .then_some(()))
        .is_some(),
        "the second request queues"
    );
    // ...so a third is turned away at once, saying why.
    let full = post_json(&server.url("/v1/route"), &json!({"query": "hello there"}));
    assert_eq!(full.status, 429, "{}", full.body);
    assert_eq!(full.error_code(), "queue_full");
    assert_eq!(full.json()["error"]["type"], "rate_limit_error");
    // The queued one gives up after the queue timeout, the slot still busy.
    let (status, code, _) = waiting.join().expect("waiting thread");
    assert_eq!((status, code.as_str()), (503, "queue_timeout"));
    assert_eq!(
        stats(&server)["in_flight"],
        1,
        "the long answer is still running"
    );

    // The slot holder finishes normally, and the slot is free again.
    let mut rest = String::new();
    busy.read_to_string(&mut rest).expect("rest of the stream");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    let after = post_json(
        &server.url("/v1/route"),
        &json!({"query": "What is an index fund?"}),
    );
    assert_eq!(after.status, 200, "{}", after.body);
    let metrics = get(&server.url("/metrics")).body;
    assert!(
        metrics.contains("mdsa_rejected_requests_total{reason=\"queue_full\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mdsa_rejected_requests_total{reason=\"queue_timeout\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_client_that_hangs_up_cancels_its_generation() {
    let server = TestServer::start(
        build_mdsa(SystemConfig::default()),
        ServerConfig {
            limits: Limits {
                max_tokens: 400,
                ..Limits::default()
            },
            ..ServerConfig::default()
        },
    );
    // Streaming: read the first words, hang up.
    let mut stream = open_stream(&server, "finance", 400);
    read_until_text(&mut stream);
    drop(stream);
    let cancelled = wait_for(Duration::from_secs(30), || {
        log_records(&server, "status=cancelled").into_iter().next()
    })
    .expect("the hung-up stream is logged as cancelled");
    let tokens = cancelled["tokens_out"].as_u64().unwrap_or(0);
    assert!(tokens < 400, "generation stopped early: {cancelled}");

    // Without streaming: a client that gives up while waiting.
    let body = chat("medical", LONG_ANSWER, 400).to_string();
    let mut socket = TcpStream::connect(server.addr).expect("connect");
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    assert!(
        wait_for(Duration::from_secs(20), || (stats(&server)["in_flight"]
            == 1)
            .then_some(()))
        .is_some(),
        "the request runs"
    );
    std::thread::sleep(Duration::from_millis(300));
    drop(socket);
    let both = wait_for(Duration::from_secs(30), || {
        let records = log_records(&server, "status=cancelled");
        (records.len() == 2).then_some(records)
    })
    .expect("the abandoned request is logged as cancelled");
    assert_eq!(both[0]["domain"], "medical", "{both:?}");
    assert!(both[0]["tokens_out"].as_u64().unwrap_or(0) < 400);
    assert!(
        wait_for(Duration::from_secs(10), || (stats(&server)["in_flight"]
            == 0)
            .then_some(()))
        .is_some(),
        "slots are released"
    );
}

#[test]
fn shutdown_lets_requests_in_flight_finish() {
    let server = TestServer::start(build_mdsa(SystemConfig::default()), ServerConfig::default());
    let addr = server.addr;
    let mut stream = open_stream(&server, "finance", 48);
    read_until_text(&mut stream);
    let stopping = std::thread::spawn(move || server.shutdown());
    let mut rest = String::new();
    stream
        .read_to_string(&mut rest)
        .expect("the stream runs to its end");
    assert!(rest.contains("\"finish_reason\":\"length\""), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    stopping.join().expect("server stopped");
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens after shutdown"
    );
}

fn domains_with(extra: DomainConfig) -> DomainRegistry {
    let mut domains = DomainRegistry::builtin();
    domains.insert(extra).expect("valid domain");
    domains
}

fn cooking() -> DomainConfig {
    DomainConfig::new(
        "cooking",
        "Recipes, cooking times, baking and kitchen techniques.",
    )
    .keywords(["recipe", "bake", "boil", "oven", "cook"])
    .examples([
        "How long should I boil an egg for a runny yolk?",
        "What temperature do I bake bread at?",
        "Can I replace butter with oil in a cake recipe?",
        "How do I keep pasta from sticking together?",
    ])
}

fn gardening() -> DomainConfig {
    DomainConfig::new(
        "gardening",
        "Growing plants, vegetables, lawns and flowers.",
    )
    .keywords(["garden", "plant", "soil", "seeds", "prune"])
    .examples([
        "When should I plant tomato seedlings outside?",
        "How often do I water a cactus?",
        "What is the best soil for growing carrots?",
        "How do I prune a rose bush?",
    ])
}

fn model_ids(server: &TestServer) -> Vec<String> {
    get(&server.url("/v1/models")).json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn domains_reload_atomically_by_request_and_when_the_file_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("domains.ron");
    std::fs::write(&file, DomainRegistry::builtin().to_ron().unwrap()).unwrap();
    let config = SystemConfig {
        domains: Some(file.clone()),
        ..SystemConfig::default()
    };
    let server = TestServer::start(
        build_mdsa(config),
        ServerConfig {
            watch_domains: Some(file.clone()),
            watch_interval: Duration::from_millis(200),
            ..ServerConfig::default()
        },
    );
    let reload = server.url("/admin/domains/reload");

    // A domains file in the body switches to it.
    let with_cooking = domains_with(cooking()).to_ron().unwrap();
    let reply = post_raw(&reload, &with_cooking);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(model_ids(&server).contains(&"cooking".to_string()));
    let route = post_json(
        &server.url("/v1/route"),
        &json!({"query": "how many minutes to boil an egg"}),
    );
    assert_eq!(route.json()["domain"], "cooking", "{}", route.body);

    // A broken file changes nothing and says where it is wrong.
    let broken = with_cooking.replacen("description:", "descripton:", 1);
    let reply = post_raw(&reload, &broken);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("<request body>"), "{}", reply.body);
    assert!(model_ids(&server).contains(&"cooking".to_string()));

    // A request in flight finishes on the domains it started with while the
    // file on disk changes under it (finance removed, gardening added).
    let mut in_flight = open_stream(&server, "finance", 40);
    read_until_text(&mut in_flight);
    let mut next = domains_with(gardening());
    next.remove("finance");
    std::fs::write(&file, next.to_ron().unwrap()).unwrap();
    let seen = wait_for(Duration::from_secs(20), || {
        let ids = model_ids(&server);
        (ids.contains(&"gardening".to_string()) && !ids.contains(&"finance".to_string()))
            .then_some(ids)
    });
    assert!(seen.is_some(), "the watcher reloads the changed file");
    let mut rest = String::new();
    in_flight.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("data: [DONE]") && !rest.contains("\"error\""),
        "{rest}"
    );
    let gone = post_json(
        &server.url("/v1/chat/completions"),
        &chat("finance", "hi", 4),
    );
    assert_eq!(gone.status, 404, "{}", gone.body);

    // Without a body, the configured file is read again.
    std::fs::write(&file, DomainRegistry::builtin().to_ron().unwrap()).unwrap();
    let reply = post_raw(&reload, "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["domains"],
        json!(["finance", "medical", "support", "technical"])
    );
}

#[test]
fn admin_loads_unloads_and_pins_models() {
    let server = TestServer::start(build_mdsa(SystemConfig::default()), ServerConfig::default());
    let action =
        |id: &str, what: &str| post_raw(&server.url(&format!("/admin/models/{id}/{what}")), "");
    let loaded = action("smollm2", "load");
    assert_eq!(loaded.status, 200, "{}", loaded.body);
    assert_eq!(loaded.json()["resident"], true);
    assert_eq!(action("smollm2", "pin").status, 200);
    let models = get(&server.url("/admin/models")).json();
    let smollm2 = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "smollm2")
        .cloned()
        .unwrap();
    assert_eq!(
        (smollm2["resident"].clone(), smollm2["pinned"].clone()),
        (json!(true), json!(true))
    );
    let unloaded = action("smollm2", "unload");
    assert_eq!(unloaded.json()["resident"], false, "{}", unloaded.body);
    let unknown = action("gpt-5", "load");
    assert_eq!(
        (unknown.status, unknown.error_code().as_str()),
        (404, "model_not_found")
    );
    let verb = action("smollm2", "explode");
    assert_eq!(
        (verb.status, verb.error_code().as_str()),
        (404, "unknown_action")
    );
}

#[test]
fn body_size_and_max_tokens_are_capped() {
    let server = TestServer::start(
        build_mdsa(SystemConfig::default()),
        ServerConfig {
            limits: Limits {
                max_body_bytes: 4096,
                max_tokens: 5,
                ..Limits::default()
            },
            ..ServerConfig::default()
        },
    );
    let big = chat("auto", &"tell me about money ".repeat(400), 4);
    let reply = post_json(&server.url("/v1/chat/completions"), &big);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.error_code(), "body_too_large");
    assert!(reply.body.contains("4096"), "{}", reply.body);
    // Asking for more tokens than the cap gets at most the cap.
    let reply = post_json(
        &server.url("/v1/chat/completions"),
        &chat("finance", LONG_ANSWER, 500),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["usage"]["completion_tokens"], 5, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[test]
fn shutdown_is_bounded_by_the_drain_timeout() {
    let server = TestServer::start(
        build_mdsa(SystemConfig::default()),
        ServerConfig {
            drain_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        },
    );
    // A client that promises a body and never sends it keeps its connection busy.
    let mut stalled = TcpStream::connect(server.addr).expect("connect");
    write!(
        stalled,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    )
    .expect("send");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    server.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
}
