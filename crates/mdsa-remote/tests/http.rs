//! The client against a real (tiny) HTTP server on loopback: streaming,
//! retries, cancellation, time limits and loading.

mod common;

use std::ops::ControlFlow;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Exchange, MODEL, Server, delta, model_list, spec_for};
use mdsa_engine::{
    ChatMessage, FinishReason, GenerationOutput, GenerationParams, LoadedEngine, ModelBackend,
    ModelError, TextGenerator,
};
use mdsa_remote::{RemoteBackend, RemoteConfig, RemoteGenerator};
use serde_json::json;

/// Long enough for loopback, short enough for a test that waits on it.
const WAIT: Duration = Duration::from_secs(2);

/// A generator for the server's spec with `options`; `TEST_KEY` reads as `sk-test`.
fn generator(server: &Server, options: &[(&str, &str)]) -> RemoteGenerator {
    let spec = server.spec(options);
    let env = |var: &str| (var == "TEST_KEY").then(|| "sk-test".to_string());
    RemoteGenerator::new(RemoteConfig::from_spec_with_env(&spec, env).unwrap())
}

/// Asks `generator` to answer "Hi", collecting the pieces; the text callback
/// breaks after `stop_after` pieces.
fn chat(
    generator: &RemoteGenerator,
    stop_after: usize,
) -> (Result<GenerationOutput, ModelError>, Vec<String>) {
    let mut pieces = Vec::new();
    let result = generator.generate_chat(
        &[ChatMessage::user("Hi")],
        &GenerationParams::default(),
        &mut |text| {
            pieces.push(text.to_string());
            match pieces.len() == stop_after {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            }
        },
    );
    (result, pieces)
}

#[test]
fn streamed_text_arrives_piece_by_piece() {
    // The server sends a piece only once the client has handed the previous
    // one to the caller: a client that waited for the whole answer would stall.
    let (ack, acks) = mpsc::channel::<()>();
    let (report, reports) = mpsc::channel::<bool>();
    let server = Server::start(move |exchange: &mut Exchange| {
        exchange.start_stream();
        let mut in_step = true;
        for piece in ["Hel", "lo", " world"] {
            exchange.event(&delta(piece));
            in_step &= acks.recv_timeout(WAIT).is_ok();
        }
        report.send(in_step).unwrap();
        exchange.event(&common::finish_chunk("stop"));
        exchange.event(
            &json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}})
                .to_string(),
        );
        exchange.event("[DONE]");
        exchange.end_stream();
    });
    let generator = generator(&server, &[("api_key_env", "TEST_KEY")]);
    let mut pieces = Vec::new();
    let output = generator
        .generate_chat(
            &[ChatMessage::system("Be brief."), ChatMessage::user("Hi")],
            &GenerationParams::default(),
            &mut |text| {
                pieces.push(text.to_string());
                ack.send(()).unwrap();
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    assert!(
        reports.recv_timeout(WAIT).unwrap(),
        "each piece reached the caller before the next was sent"
    );
    assert_eq!(pieces, ["Hel", "lo", " world"]);
    assert_eq!(output.text, "Hello world");
    assert_eq!(output.finish_reason, FinishReason::Stop);
    assert_eq!(
        (output.usage.prompt_tokens, output.usage.completion_tokens),
        (9, 3)
    );
    assert!(output.timings.time_to_first_token <= output.timings.total);

    let request = &server.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
    let body = request.json();
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(body["max_tokens"], 256);
}

#[test]
fn generate_continues_text_through_the_completions_endpoint() {
    let server = Server::start(|exchange: &mut Exchange| {
        exchange.start_stream();
        exchange.event(&json!({"choices": [{"text": "4", "finish_reason": "length"}]}).to_string());
        exchange.event("[DONE]");
        exchange.end_stream();
    });
    let output = generator(&server, &[])
        .generate("2+2=", &GenerationParams::default(), &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        (output.text.as_str(), output.finish_reason),
        ("4", FinishReason::Length)
    );
    let request = &server.requests()[0];
    assert_eq!(request.path, "/v1/completions");
    assert_eq!(request.json()["prompt"], "2+2=");
    assert_eq!(request.header("authorization"), None);
}

/// Serves `first` to the first connection and a one-piece answer to the next,
/// and checks that the caller gets that answer, once, after one retry.
fn assert_retried_after(first: fn(&mut Exchange), options: &[(&str, &str)]) {
    let server = Server::start(move |exchange: &mut Exchange| match exchange.index {
        0 => first(exchange),
        _ => exchange.stream_chat(&["ok"], "stop"),
    });
    let (output, pieces) = chat(&generator(&server, options), usize::MAX);
    assert_eq!(output.unwrap().text, "ok");
    assert_eq!(pieces, ["ok"]);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_busy_server_is_retried_until_it_answers() {
    assert_retried_after(
        |exchange| exchange.respond(503, &json!({"error": {"message": "busy"}})),
        &[],
    );
}

#[test]
fn a_server_busy_for_good_fails_after_the_retries() {
    let server = Server::start(|exchange: &mut Exchange| {
        exchange.respond(503, &json!({"error": {"message": "overloaded, try later"}}));
    });
    let message = chat(&generator(&server, &[("retries", "2")]), usize::MAX)
        .0
        .unwrap_err()
        .to_string();
    assert_eq!(server.requests().len(), 3);
    assert!(
        message.contains("HTTP 503") && message.contains("overloaded, try later"),
        "{message}"
    );
    assert!(
        message.contains("3 attempts") && message.contains("/v1/chat/completions"),
        "{message}"
    );
}

#[test]
fn other_http_errors_quote_the_server_and_are_not_retried() {
    let server = Server::start(|exchange: &mut Exchange| {
        exchange.respond(
            400,
            &json!({"error": {"message": "max_tokens is too large"}}),
        );
    });
    let message = chat(&generator(&server, &[]), usize::MAX)
        .0
        .unwrap_err()
        .to_string();
    assert_eq!(server.requests().len(), 1);
    assert!(
        message.contains("HTTP 400: max_tokens is too large"),
        "{message}"
    );
}

#[test]
fn a_stream_that_breaks_before_any_text_is_retried() {
    // Headers, then the connection drops.
    assert_retried_after(Exchange::start_stream, &[]);
}

#[test]
fn a_stream_that_breaks_after_text_is_not_retried() {
    let server = Server::start(|exchange: &mut Exchange| {
        exchange.start_stream();
        exchange.event(&delta("Hel"));
        // The connection drops mid-answer.
    });
    let (result, pieces) = chat(&generator(&server, &[]), usize::MAX);
    let message = result.unwrap_err().to_string();
    assert_eq!(pieces, ["Hel"], "the caller never sees text twice");
    assert_eq!(server.requests().len(), 1);
    assert!(message.contains("not retried"), "{message}");
}

#[test]
fn a_cancel_closes_the_connection() {
    let (report, reports) = mpsc::channel();
    let server = Server::start(move |exchange: &mut Exchange| {
        exchange.start_stream();
        exchange.event(&delta("one"));
        report.send(exchange.client_closed(WAIT)).unwrap();
    });
    let (output, pieces) = chat(&generator(&server, &[]), 1);
    let output = output.unwrap();
    assert_eq!(pieces, ["one"]);
    assert_eq!(
        (output.text.as_str(), output.finish_reason),
        ("one", FinishReason::Cancelled)
    );
    assert!(
        reports.recv_timeout(WAIT).unwrap(),
        "the server saw the connection close"
    );
}

#[test]
fn a_stalled_stream_times_out() {
    let server = Server::start(|exchange: &mut Exchange| {
        exchange.start_stream();
        exchange.event(&delta("Hel"));
        // Silence until the client gives up.
        exchange.client_closed(WAIT);
    });
    let started = Instant::now();
    let (result, pieces) = chat(
        &generator(&server, &[("read_timeout_secs", "0.2")]),
        usize::MAX,
    );
    let message = result.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(pieces, ["Hel"]);
    assert!(
        message.contains("timed out (no data within `read_timeout_secs`)"),
        "{message}"
    );
}

#[test]
fn a_server_silent_before_the_first_byte_is_retried() {
    // Not even the headers, until the client gives up.
    assert_retried_after(
        |exchange| {
            exchange.client_closed(WAIT);
        },
        &[("read_timeout_secs", "0.2")],
    );
}

#[test]
fn load_checks_the_server_serves_the_model() {
    let server = Server::start(|exchange: &mut Exchange| {
        exchange.respond(200, &model_list(&["other/a", "other/b"]));
    });
    let message = RemoteBackend::new()
        .load(&server.spec(&[]))
        .unwrap_err()
        .to_string();
    assert!(message.contains(&format!("{MODEL:?}")), "{message}");
    assert!(message.contains("other/a, other/b"), "{message}");
    assert!(
        message.contains(&format!("{}/models", server.base_url())),
        "{message}"
    );
}

#[test]
fn load_returns_a_remote_generator() {
    let server = Server::start(|exchange: &mut Exchange| {
        exchange.respond(200, &model_list(&["other/a", MODEL]));
    });
    let backend = RemoteBackend::new();
    let spec = server.spec(&[("context_length", "8192")]);
    assert_eq!(backend.plan(&spec).unwrap().device, "remote");
    let loaded = backend.load(&spec).unwrap();
    assert_eq!((loaded.weight_bytes, loaded.kv_bytes), (0, 0));
    assert_eq!(loaded.device, "remote");
    let LoadedEngine::Generator(generator) = loaded.engine else {
        panic!("a remote model is a generator");
    };
    assert_eq!(generator.context_length(), 8192);
    assert_eq!(server.requests()[0].path, "/v1/models");
}

#[test]
fn load_names_an_unreachable_server() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base_url = format!("http://127.0.0.1:{port}/v1");
    let message = RemoteBackend::new()
        .load(&spec_for(&base_url, &[("retries", "0")]))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&format!("{base_url}/models: connection failed")),
        "{message}"
    );
}
