//! mdsa inside your own axum application.
//!
//! Shows: one [`Mdsa`] shared by the application's own routes (`GET /hello`,
//! and `POST /ask`, an app-specific endpoint that answers with mdsa) and by
//! all of mdsa-server's routes (`/v1/chat/completions`, `/metrics`, the
//! dashboard at `/`, ...), merged into one router. `/ask` also waits for a
//! slot of mdsa-server's admission gate, so the app's requests and the API's
//! share one limit on concurrent generations; and both land in the same
//! request log and metrics.
//!
//! ```sh
//! cargo run -p mdsa-server --example embed_axum                 # serve on 127.0.0.1:8080
//! curl -s localhost:8080/ask -H 'content-type: application/json' \
//!     -d '{"question": "I was charged twice this month"}'
//! cargo run -p mdsa-server --example embed_axum -- --self-test  # a free port, real requests, exit
//! ```
//!
//! `--self-test` binds 127.0.0.1:0, sends real requests to both the app's
//! route and mdsa's OpenAI route, prints what came back and exits non-zero
//! if anything is off. The models are the ones `cargo xtask fetch-models`
//! puts in the Hugging Face cache.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use mdsa::{Mdsa, QueryOptions};
use mdsa_server::{ApiError, AppState, Limits};
use serde::{Deserialize, Serialize};

/// What `/ask` takes.
#[derive(Deserialize)]
struct Ask {
    question: String,
}

/// What `/ask` answers: the app's own shape, not OpenAI's.
#[derive(Serialize)]
struct Answer {
    domain: Option<String>,
    confidence: f32,
    answer: String,
    /// Requests in mdsa's log so far, from every route: one shared instance.
    requests_logged: usize,
}

/// The app's endpoint: a question in, mdsa's answer out.
async fn ask(
    State(state): State<AppState>,
    Json(ask): Json<Ask>,
) -> Result<Json<Answer>, ApiError> {
    // Wait for a slot like mdsa's own routes do (429/503 when overloaded).
    let permit = state.admit().await?;
    let mdsa = state.mdsa().clone();
    let options = QueryOptions {
        max_tokens: Some(state.limits().max_tokens),
        ..QueryOptions::default()
    };
    // Inference is blocking CPU work: keep it off the async workers.
    let response = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        mdsa.query_with(&ask.question, &options, &mut |_| ControlFlow::Continue(()))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "query_failed", e.to_string()))?;
    Ok(Json(Answer {
        domain: response.domain,
        confidence: response.confidence,
        answer: response.text,
        requests_logged: state.mdsa().logger().len(),
    }))
}

/// The application: its own routes and mdsa's, over one state.
fn app(mdsa: Mdsa, limits: Limits) -> axum::Router {
    let state = AppState::new(mdsa, limits);
    axum::Router::new()
        .route("/hello", get(|| async { "hello from my app\n" }))
        .route("/ask", post(ask))
        .with_state(state.clone())
        // mdsa's routes keep their own paths (`/v1/...`, `/metrics`, `/`):
        // the dashboard's page calls them there. Its fallback (a 404 in
        // OpenAI's shape) answers paths neither router has.
        .merge(mdsa_server::router(state))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut self_test = false;
    let mut port = 8080;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--self-test" => self_test = true,
            "--port" => {
                let value = args.next().context("--port needs a number")?;
                port = value
                    .parse()
                    .with_context(|| format!("--port: {value:?} is not a port number"))?;
            }
            other => {
                bail!("unknown argument {other:?}; usage: embed_axum [--port N] [--self-test]")
            }
        }
    }

    // Loading the encoder blocks for a moment; do it before serving.
    let mdsa = tokio::task::spawn_blocking(|| Mdsa::builder().build())
        .await?
        .context("starting mdsa (run `cargo xtask fetch-models` first)")?;
    let limits = Limits {
        // Short answers: this is a demo.
        max_tokens: if self_test { 16 } else { 128 },
        ..Limits::default()
    };
    let app = app(mdsa.clone(), limits);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", if self_test { 0 } else { port }))
        .await
        .context("binding the port")?;
    let addr = listener.local_addr()?;
    if !self_test {
        println!("serving on http://{addr} (/hello, /ask, /v1/..., dashboard at /)");
        axum::serve(listener, app)
            .with_graceful_shutdown(mdsa_server::shutdown_signal())
            .await?;
        return Ok(());
    }

    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");
    tokio::task::spawn_blocking(move || self_test_requests(&base)).await??;
    let logged = mdsa.logger().len();
    ensure!(
        logged == 2,
        "expected 2 requests in the shared log, found {logged}"
    );
    println!("self-test passed: 2 requests, one log ({addr})");
    Ok(())
}

/// Real requests against the running app, with a plain blocking client.
fn self_test_requests(base: &str) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let call = |method: &str, path: &str, body: Option<serde_json::Value>| {
        let url = format!("{base}{path}");
        let mut response = match body {
            Some(body) => agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.to_string()),
            None => agent.get(&url).call(),
        }
        .with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        let shown: String = text.trim().chars().take(200).collect();
        println!("{method} {path} -> {status}: {shown}");
        ensure!(status == 200, "{method} {path} answered {status}");
        anyhow::Ok(text)
    };

    let hello = call("GET", "/hello", None)?;
    ensure!(hello.contains("hello"), "unexpected /hello body");

    let answer: serde_json::Value = serde_json::from_str(&call(
        "POST",
        "/ask",
        Some(
            serde_json::json!({"question": "I was charged twice for my subscription, how do I get a refund?"}),
        ),
    )?)?;
    ensure!(
        answer["domain"] == "support",
        "/ask routed to {} instead of support",
        answer["domain"]
    );
    ensure!(
        answer["answer"]
            .as_str()
            .is_some_and(|a| !a.trim().is_empty()),
        "/ask gave no answer"
    );

    let completion: serde_json::Value = serde_json::from_str(&call(
        "POST",
        "/v1/chat/completions",
        Some(serde_json::json!({
            "model": "auto",
            "messages": [{"role": "user", "content": "What is an index fund?"}],
            "max_tokens": 16,
        })),
    )?)?;
    let content = &completion["choices"][0]["message"]["content"];
    ensure!(
        content.as_str().is_some_and(|c| !c.trim().is_empty()),
        "/v1/chat/completions gave no content"
    );
    ensure!(
        completion["mdsa"]["domain"] == "finance",
        "/v1/chat/completions routed to {} instead of finance",
        completion["mdsa"]["domain"]
    );
    Ok(())
}
