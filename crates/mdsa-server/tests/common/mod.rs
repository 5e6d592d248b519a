//! A real server for tests: real models, bound to a free loopback port, on
//! its own runtime thread; and a small blocking HTTP client over `ureq`.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mdsa::{Mdsa, SystemConfig};
use mdsa_server::{Limits, Server, ServerConfig};
use serde_json::Value;
use tokio::sync::oneshot;

/// A running server; shut down (gracefully) when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub mdsa: Mdsa,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Serves `mdsa` with `config` (its port is replaced by a free one).
    pub fn start(mdsa: Mdsa, mut config: ServerConfig) -> Self {
        config.port = 0;
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, addr) = std::sync::mpsc::channel();
        let served = mdsa.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let server = Server::bind(served, config).await.expect("bind");
                ready
                    .send(server.local_addr().expect("addr"))
                    .expect("report address");
                server
                    .serve(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let addr = addr
            .recv_timeout(Duration::from_secs(30))
            .expect("server started");
        Self {
            addr,
            mdsa,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts a graceful shutdown and waits for the server to finish.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// A temporary request log file, so tests see what the server logged.
pub fn config_with_log() -> (SystemConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = SystemConfig::default();
    config.logging.file = Some(dir.path().join("requests.jsonl"));
    (config, dir)
}

/// mdsa over the project's models with the built-in domains.
pub fn build_mdsa(config: SystemConfig) -> Mdsa {
    Mdsa::builder()
        .config(config)
        .build()
        .expect("mdsa builds over the fetched models (run `cargo xtask fetch-models`)")
}

/// One server over the real models, shared by the tests of a binary that
/// only read and answer (tests that change limits or domains start their own).
pub fn shared() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mdsa = build_mdsa(SystemConfig::default());
        TestServer::start(mdsa, ServerConfig::default())
    })
}

/// Limits for tests: small generations.
pub fn limits() -> Limits {
    Limits {
        max_tokens: 64,
        ..Limits::default()
    }
}

/// An HTTP answer: status and body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: String,
    pub header_names: Vec<String>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Whether the answer has no header `name` (lowercase).
    pub fn headers_lack(&self, name: &str) -> bool {
        !self.header_names.iter().any(|h| h == name)
    }

    /// The `error.code` of an OpenAI-shaped error.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        // Statuses are the subject of the tests, not errors.
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = response.expect("HTTP exchange");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let header_names = response
        .headers()
        .keys()
        .map(|name| name.as_str().to_string())
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .expect("body");
    Reply {
        status,
        body,
        content_type,
        header_names,
    }
}

/// `GET url`.
pub fn get(url: &str) -> Reply {
    reply(agent().get(url).call())
}

/// Any request with extra headers; `body` is sent when given.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(body.unwrap_or_default().to_string())
        .expect("a valid request");
    reply(agent().run(request))
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, body: &Value) -> Reply {
    post_raw(url, &body.to_string())
}

/// `POST url` with a raw body, sent as JSON.
pub fn post_raw(url: &str, body: &str) -> Reply {
    reply(
        agent()
            .post(url)
            .header("content-type", "application/json")
            .send(body),
    )
}

/// A chat request for `content` to `model`.
pub fn chat(model: &str, content: &str, max_tokens: u32) -> Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
    })
}

/// The `data:` payloads of a server-sent-events body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /v1/stats`.
pub fn stats(server: &TestServer) -> Value {
    get(&server.url("/v1/stats")).json()
}

/// `GET /v1/logs?{query}`: the request records it returns.
pub fn log_records(server: &TestServer, query: &str) -> Vec<Value> {
    get(&server.url(&format!("/v1/logs?{query}")))
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}
