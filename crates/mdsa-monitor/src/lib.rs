//! Request log, latency metrics and Prometheus exposition for mdsa.
//!
//! mdsa routes each query to a domain whose small language model answers.
//! This crate is where every request ends up: it is the bottom layer, so
//! the router, the model manager and the server can all depend on it, and
//! it depends on nothing of mdsa.
//!
//! - [`RequestLogger`] keeps the last requests in memory (bounded) for
//!   `mdsa logs` and the dashboard, filters and exports them
//!   ([`ExportFormat`]: JSON, JSONL, CSV), and mirrors them to an
//!   append-only JSONL file rotated by size ([`SinkConfig`]). Medical and
//!   finance queries are sensitive, so the query text can be reduced to a
//!   SHA-256 hash, globally or per domain ([`QueryStorage`],
//!   [`LoggerConfig::redact_domains`]), before it reaches memory or disk.
//! - [`MetricsCollector`] aggregates latency (exact min, max and mean, HDR
//!   percentiles within 0.1%), throughput over a sliding window and error
//!   rate, overall and per domain and model, from many threads without a
//!   global lock; it keeps a history of periodic [`MetricsSnapshot`]s.
//! - [`ModelMetrics`] (from [`MetricsCollector::model_metrics`]) counts what
//!   the model manager does: loads and their duration, hits, misses,
//!   evictions, failures, resident bytes per model and per device.
//! - [`MetricsCollector::encode_prometheus`] renders all of it, plus any
//!   metric other crates register, as Prometheus/OpenMetrics text.
//!
//! # Prometheus metrics
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `mdsa_requests_total` | counter | `domain`, `model`, `status` |
//! | `mdsa_request_duration_seconds` | histogram (5 ms … 120 s) | `domain`, `model` |
//! | `mdsa_time_to_first_token_seconds` | histogram (5 ms … 120 s) | `domain`, `model` |
//! | `mdsa_request_latency_quantile_seconds` | gauge | `quantile` = `0.5`, `0.95`, `0.99` |
//! | `mdsa_tokens_in_total`, `mdsa_tokens_out_total` | counter | `domain`, `model` |
//! | `mdsa_throughput_requests_per_second` | gauge | |
//! | `mdsa_error_rate` | gauge | |
//! | `mdsa_uptime_seconds` | gauge | |
//! | `mdsa_model_loads_total`, `mdsa_model_hits_total`, `mdsa_model_misses_total`, `mdsa_model_evictions_total`, `mdsa_model_unloads_total`, `mdsa_model_load_failures_total` | counter | `model` |
//! | `mdsa_model_prefix_hits_total`, `mdsa_model_prefix_misses_total`, `mdsa_model_cached_prompt_tokens_total` | counter | `model` |
//! | `mdsa_model_batch_steps_total`, `mdsa_model_batch_sequences_total` (÷: mean batch size per step) | counter | `model` |
//! | `mdsa_model_batch_size_max`, `mdsa_model_active_sequences` | gauge | `model` |
//! | `mdsa_model_kv_cache_bytes` | gauge | `model` |
//! | `mdsa_model_load_duration_seconds` | histogram (5 ms … 120 s) | `model` |
//! | `mdsa_model_resident_bytes` | gauge | `model`, `device` |
//! | `mdsa_device_resident_bytes` | gauge | `device` |
//!
//! A missing domain or model is labelled [`NONE_LABEL`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use mdsa_monitor::{
//!     LatencyBreakdown, LogFilter, LoggerConfig, MetricsCollector, RequestLogger, RequestRecord,
//! };
//!
//! let logger = RequestLogger::new(LoggerConfig::default());
//! let metrics = MetricsCollector::default();
//!
//! let record = RequestRecord::new("req-1", "What is an index fund?")
//!     .with_route("finance", 0.93)
//!     .with_model("fin-3b")
//!     .with_tokens(12, 140)
//!     .with_latency(LatencyBreakdown::default().with_total(Duration::from_millis(850)));
//! metrics.record_request(&record);
//! logger.log(record)?;
//!
//! // Finance is redacted by default: only the hash is kept.
//! let logged = logger.query(&LogFilter::new().domain("finance"));
//! assert_eq!(logged[0].query, None);
//! assert!(logged[0].query_hash.is_some());
//! assert_eq!(metrics.snapshot().per_domain["finance"].requests, 1);
//! assert!(metrics.encode_prometheus()?.contains("mdsa_requests_total"));
//! # Ok::<(), mdsa_monitor::MonitorError>(())
//! ```

mod clock;
mod error;
mod export;
mod instruments;
mod logger;
mod metrics;
mod models;
mod prometheus;
mod query;
mod record;
mod sink;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{MonitorError, ParseEnumError};
pub use export::{CSV_HEADER, ExportFormat, read_records, write_records};
pub use instruments::{Counter, Gauge, LabelledCounter};
pub use logger::{LogFilter, LoggerConfig, QueryStorage, RequestLogger};
pub use metrics::{
    GroupSnapshot, HistoryHandle, LatencySummary, MetricsCollector, MetricsConfig, MetricsSnapshot,
    NONE_LABEL, Observation, StatusCounts,
};
pub use models::{ModelMetrics, ModelMetricsSnapshot, ModelResidency, ModelServing};
pub use query::{LogQuery, LogQueryError};
pub use record::{LatencyBreakdown, RequestRecord, RequestStatus, query_sha256};
pub use sink::{SinkConfig, read_jsonl, read_jsonl_with_rotations, rotated_path};

/// The prometheus-client version this crate encodes with, for crates that
/// register metrics through [`MetricsCollector::register`].
pub use prometheus_client;

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
