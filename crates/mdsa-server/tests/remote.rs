//! Scale-out: one mdsa server routes a domain to a second mdsa server over
//! loopback, through the `openai` remote backend (crate mdsa-remote).

mod common;

use std::sync::Arc;

use common::{TestServer, build_mdsa, chat, get, post_json, sse_data};
use mdsa::domains::DomainRegistry;
use mdsa::engine::{ModelRole, ModelSpec};
use mdsa::{Mdsa, SystemConfig};
use mdsa_remote::RemoteBackend;
use mdsa_server::ServerConfig;
use serde_json::{Value, json};

/// The front server: its finance domain answers with `remote-smollm2`, a
/// model that lives on `back`.
fn front_for(back: &TestServer) -> TestServer {
    let mut config = SystemConfig::default();
    let mut remote = ModelSpec::new("remote-smollm2", "smollm2", ModelRole::Generator);
    remote.backend = mdsa_remote::BACKEND_NAME.to_string();
    remote.options.insert("base_url", back.url("/v1"));
    remote.options.insert("timeout_secs", 120);
    config.models.push(remote);
    let mut domains = DomainRegistry::builtin();
    let finance = domains
        .get("finance")
        .cloned()
        .expect("finance")
        .model("remote-smollm2");
    domains.insert(finance).expect("valid");
    let mdsa = Mdsa::builder()
        .config(config)
        .domains(domains)
        .backend(Arc::new(RemoteBackend::new()))
        .build()
        .expect("front mdsa builds");
    TestServer::start(mdsa, ServerConfig::default())
}

fn back_records(back: &TestServer) -> Vec<Value> {
    get(&back.url("/v1/logs?domain=direct"))
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_domain_answered_by_another_mdsa_server() {
    let back = TestServer::start(build_mdsa(SystemConfig::default()), ServerConfig::default());
    let front = front_for(&back);

    // Finance goes to the back server...
    let reply = post_json(
        &front.url("/v1/chat/completions"),
        &chat("auto", "What is compound interest?", 12),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["mdsa"]["domain"], "finance");
    assert_eq!(body["model"], "remote-smollm2");
    let answer = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!answer.trim().is_empty(), "{body}");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    // ...where it arrives as a direct request for its model, with the front's
    // domain prompt already in the conversation (not routed again).
    let records = back_records(&back);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["model"], "smollm2");
    assert_eq!(records[0]["status"], "completed");
    assert_eq!(
        records[0]["tokens_out"], body["usage"]["completion_tokens"],
        "usage passes through"
    );

    // The front's resident models show where it lives.
    let stats = get(&front.url("/v1/stats")).json();
    let remote = stats["resident"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "remote-smollm2")
        .cloned()
        .expect("the remote model is resident on the front");
    assert_eq!(
        (remote["device"].clone(), remote["bytes"].clone()),
        (json!("remote"), json!(0))
    );

    // Other domains stay local: the back server sees nothing new.
    let local = post_json(
        &front.url("/v1/chat/completions"),
        &chat("auto", "I have a sore throat and a fever", 6),
    );
    assert_eq!(local.json()["model"], "smollm2", "{}", local.body);
    assert_eq!(back_records(&back).len(), 1);

    // Streaming passes through piece by piece.
    let mut request = chat("finance", "How do I start saving for retirement?", 10);
    request["stream"] = json!(true);
    let streamed = post_json(&front.url("/v1/chat/completions"), &request);
    let data = sse_data(&streamed.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let pieces = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert!(pieces >= 2, "{}", streamed.body);
    assert_eq!(back_records(&back).len(), 2);
}

#[test]
fn a_back_server_that_is_gone_is_a_clear_error_on_the_front() {
    let back = TestServer::start(build_mdsa(SystemConfig::default()), ServerConfig::default());
    let front = front_for(&back);
    let back_url = back.url("/v1");
    back.shutdown();
    let reply = post_json(
        &front.url("/v1/chat/completions"),
        &chat("finance", "What is compound interest?", 6),
    );
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.error_code(), "backend_unavailable");
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("remote-smollm2"), "{message}");
    assert!(message.contains(&back_url), "names the server: {message}");
    // The front still answers what it holds itself.
    let local = post_json(
        &front.url("/v1/chat/completions"),
        &chat("medical", "I have a sore throat", 4),
    );
    assert_eq!(local.status, 200, "{}", local.body);
}
