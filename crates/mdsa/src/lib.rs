//! mdsa: answer every query with the right specialist.
//!
//! A small encoder routes each query to a domain (finance, medical, support,
//! technical, or one you define); that domain's small language model, loaded on
//! demand under a memory budget, writes the answer; every request walks a visible
//! workflow and is logged and measured.
//!
//! ```no_run
//! let mdsa = mdsa::Mdsa::builder().build()?;
//! let answer = mdsa.query("I have a fever and a headache")?;
//! println!("[{}] {}", answer.domain.as_deref().unwrap_or("none"), answer.text);
//! # Ok::<(), mdsa::MdsaError>(())
//! ```
//!
//! This facade is the one crate an application needs. It owns the
//! orchestrator ([`Mdsa`]) and its configuration ([`SystemConfig`]), and
//! re-exports the layers below so that their types line up. Depend on a lower
//! crate directly when you need only that layer:
//!
//! | module | crate | job |
//! |---|---|---|
//! | [`hw`] | `mdsa-hw` | CPU, SIMD, RAM, GPUs, device choice, memory budget |
//! | [`bus`] | `mdsa-bus` | message bus and per-request workflow state machine |
//! | [`monitor`] | `mdsa-monitor` | request log, metrics, Prometheus exposition |
//! | [`models`] | `mdsa-models` | model sources, encoders and decoders on burn, model manager |
//! | [`domains`] | `mdsa-domains` | domain configs, router, prompts, validation, executor |

pub mod config;
mod error;
mod orchestrator;
mod response;

pub use config::SystemConfig;
pub use error::MdsaError;
pub use orchestrator::{DIRECT_DOMAIN, Mdsa, MdsaBuilder, QueryOptions, new_request_id};
pub use response::{Outcome, QueryEvent, QueryResponse, ResponseTimings};

pub use mdsa_engine::{Backends, UnknownBackend};

pub use mdsa_bus as bus;
pub use mdsa_domains as domains;
pub use mdsa_engine as engine;
pub use mdsa_hw as hw;
pub use mdsa_models as models;
pub use mdsa_monitor as monitor;

/// The version of mdsa, as shown by `mdsa --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
