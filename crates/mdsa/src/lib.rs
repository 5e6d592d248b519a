//! mdsa: answer every query with the right specialist.
//!
//! A small encoder routes each query to a domain (finance, medical, support,
//! technical, or one you define); that domain's small language model, loaded on
//! demand under a memory budget, writes the answer; every request walks a visible
//! workflow and is logged and measured.
//!
//! This facade is the one crate an application needs. It re-exports the layers
//! below it so that their types line up, and (as later layers land) it owns the
//! orchestrator that joins them. Depend on a lower crate directly when you need
//! only that layer:
//!
//! | module | crate | job |
//! |---|---|---|
//! | [`hw`] | `mdsa-hw` | CPU, SIMD, RAM, GPUs, device choice, memory budget |
//! | [`bus`] | `mdsa-bus` | message bus and per-request workflow state machine |
//! | [`monitor`] | `mdsa-monitor` | request log, metrics, Prometheus exposition |
//! | [`models`] | `mdsa-models` | model sources, tokenizers, encoders and decoders on burn |

pub use mdsa_bus as bus;
pub use mdsa_hw as hw;
pub use mdsa_models as models;
pub use mdsa_monitor as monitor;

/// The version of mdsa, as shown by `mdsa --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
