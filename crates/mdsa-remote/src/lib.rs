//! A model backend for mdsa that generates on any OpenAI-compatible server
//! (vLLM, llama.cpp's server, TGI, another mdsa), so that a domain can be
//! answered by a model too big for the machine that routes.
//!
//! # Use
//!
//! Register the backend with the model manager, then select it in the registry
//! with `backend: "openai"`. `source` is the model name the server knows:
//!
//! ```ron
//! (
//!     id: "big-finance",
//!     source: "Qwen/Qwen2.5-7B-Instruct",
//!     role: generator,
//!     backend: "openai",
//!     options: {
//!         "base_url": "http://gpu-box:8000/v1",
//!         "api_key_env": "VLLM_API_KEY",
//!         "timeout_secs": 120,
//!         "retries": 2,
//!     },
//! )
//! ```
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use mdsa_models::manager::ModelManager;
//! use mdsa_engine::spec::ModelRegistry;
//!
//! let registry = ModelRegistry::from_ron_file("models.ron".as_ref())?;
//! let manager = ModelManager::builder(registry)
//!     .backend(Arc::new(mdsa_remote::RemoteBackend::new()))
//!     .build();
//! let answerer = manager.get("big-finance")?; // checks the server serves the model
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Values are written as themselves: strings quoted, numbers and `true`/`false`
//! bare. Numbers and booleans written as strings (`"timeout_secs": "120"`, as
//! older files have them) read the same.
//!
//! | option | type | meaning | default |
//! | --- | --- | --- | --- |
//! | `base_url` | string | the API root, `http://` or `https://` (the `tls` feature) | required |
//! | `api_key_env` | string | environment variable holding a bearer key (keys stay out of files) | no key |
//! | `timeout_secs` | seconds | limit on a whole request, streaming included | 600 |
//! | `connect_timeout_secs` | seconds | limit on opening the connection | 10 |
//! | `read_timeout_secs` | seconds | longest silence from the server: before the answer starts and between chunks | 60 |
//! | `retries` | whole number | retries of transient failures (connection, timeout, HTTP 429/502/503/504) | 2 |
//! | `context_length` | whole number, at least 2 | prompt plus answer, in tokens | the spec's `max_context`, else 4096 |
//! | `extensions` | bool | also send `top_k` and `repetition_penalty`; `false` for strict servers | `true` |
//!
//! Seconds may have decimals (`0.5`). Any other key is an error listing the
//! valid ones, as is a missing `base_url` or an unset key variable: each
//! message names the file and line (when the spec came from one), the field
//! path (`models[0].options.timeout_secs`), the model, what was expected and
//! what was found. Proxies come from the
//! usual environment variables (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, ...).
//!
//! Answers are streamed (`stream: true`), so text reaches mdsa as the server
//! writes it. Returning `Break` from the text callback drops the connection,
//! which is how OpenAI-compatible servers learn to stop generating. A failed
//! request is retried with exponential backoff (200 ms, 400 ms, ...) only
//! while no text has reached the callback, so text is never delivered twice.
//!
//! # Writing your own backend crate
//!
//! This crate is the worked example of mdsa's extension point,
//! [`ModelBackend`](mdsa_engine::ModelBackend). A backend crate needs
//! four things, each a file here:
//!
//! 1. **A name** ([`BACKEND_NAME`], in `backend.rs`): what specs write in their
//!    `backend` field. The manager keeps one backend per name.
//! 2. **A plan** ([`ModelBackend::plan`](mdsa_engine::ModelBackend::plan)):
//!    where the model will live and how many bytes to reserve before loading.
//!    The manager budgets memory per device label; a remote model takes none,
//!    so it plans `"remote"` and 0 bytes.
//! 3. **A load** ([`ModelBackend::load`](mdsa_engine::ModelBackend::load)):
//!    read the spec's `options` into a typed serde struct once with
//!    [`ModelSpec::options`](mdsa_engine::ModelSpec::options) (`config.rs`;
//!    `deny_unknown_fields` lists the valid keys on a typo), fail early and clearly (here: is the server up, does it
//!    serve the model?), and return a
//!    [`LoadedModel`](mdsa_engine::LoadedModel) with the engine and
//!    its measured size.
//! 4. **An engine**: a [`TextGenerator`](mdsa_engine::TextGenerator)
//!    (`generator.rs`) or an [`Embedder`](mdsa_engine::Embedder). Stream text
//!    through `on_text` as it is produced, stop when it breaks, and report usage
//!    and timings. Override `generate_chat` if the engine applies its own chat
//!    template.
//!
//! Errors are the crate's own ([`RemoteError`], [`ConfigError`]), converted to
//! [`ModelError::Backend`](mdsa_engine::ModelError::Backend) at the boundary
//! with their whole message. The rest of this crate is the transport: `http.rs`
//! (requests, retries), `sse.rs` (server-sent events), `stream.rs` (chunks to
//! text) and `wire.rs` (the JSON).
//!
//! # Features
//!
//! - `tls` (default): `https://` base URLs, through rustls. Without it, an
//!   https URL is rejected when the model loads.

mod backend;
mod config;
mod error;
mod generator;
mod http;
mod sse;
mod stream;
mod wire;

pub use backend::{BACKEND_NAME, REMOTE_DEVICE, RemoteBackend};
pub use config::{ConfigError, OPTIONS, RemoteConfig};
pub use error::RemoteError;
pub use generator::RemoteGenerator;
pub use stream::estimate_tokens;

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
