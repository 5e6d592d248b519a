//! mdsa as a service: an OpenAI-compatible HTTP API over mdsa's routing,
//! Prometheus metrics, admin routes and a live dashboard, on axum and tokio.
//!
//! `mdsa serve` runs it. To serve mdsa from your own axum application, build
//! the state over your [`Mdsa`](mdsa::Mdsa) and merge the [`router`]:
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let mdsa = mdsa::Mdsa::builder().build()?;
//! let state = mdsa_server::AppState::new(mdsa, mdsa_server::Limits::default());
//! let app = axum::Router::new()
//!     .route("/hello", axum::routing::get(|| async { "hello" }))
//!     .merge(mdsa_server::router(state));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Routes
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat; `model: "auto"` routes, a domain or model id forces; `stream: true` for server-sent events; an `mdsa` object carries the route decision |
//! | `GET /v1/models` | `auto`, the domains and the generator models |
//! | `POST /v1/route` | the route decision for `{"query": ...}`, with every domain's score; for `{"queries": [...]}` a list of them, embedded in batches |
//! | `POST /v1/embeddings` | OpenAI embeddings from the router's encoder |
//! | `GET /v1/logs` | the request log, filtered (`domain`, `status`, `text`, `since`, `until`, `min_ms`, `max_ms`, `offset`, `limit`), as `format=json`, `jsonl` or `csv` |
//! | `GET /v1/stats` | the live figures behind the dashboard |
//! | `GET /health`, `GET /ready` | liveness; readiness (503 while draining) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /admin/models`, `POST /admin/models/{id}/{load,unload,pin,unpin}` | the model manager |
//! | `POST /admin/domains/reload` | swap the domains (body: a domains file, or none to re-read the configured one) |
//! | `GET /` | the dashboard |
//!
//! With [`ApiKeys`] set, the API and `/metrics` need `Authorization: Bearer
//! <api key>` and the admin routes the admin key; `/health`, `/ready` and the
//! dashboard's page stay open.
//!
//! Errors are OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
//! naming the request part at fault.

mod auth;
mod config;
mod error;
pub mod openai;
mod routes;
mod serve;
mod state;
mod watch;

pub use auth::ApiKeys;
pub use config::{Limits, ServerConfig};
pub use error::ApiError;
pub use routes::router;
pub use serve::{ServeError, Server, shutdown_signal};
pub use state::{AppState, Permit};
pub use watch::watch_domains;

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
