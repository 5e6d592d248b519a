//! The metric kinds a crate above registers with
//! [`MetricsCollector::register`](crate::MetricsCollector::register), named
//! here so that it needs neither prometheus-client nor its version.
//!
//! ```
//! use mdsa_monitor::{Gauge, LabelledCounter, MetricsCollector};
//!
//! let metrics = MetricsCollector::default();
//! let queued = Gauge::default();
//! let rejected = LabelledCounter::<[(&str, &str); 1]>::default();
//! metrics.register("queue_depth", "Requests waiting", queued.clone());
//! metrics.register("rejected_requests", "Requests turned away", rejected.clone());
//! queued.inc();
//! rejected.get_or_create(&[("reason", "queue_full")]).inc();
//! let text = metrics.encode_prometheus().unwrap();
//! assert!(text.contains("mdsa_queue_depth 1"));
//! assert!(text.contains("mdsa_rejected_requests_total{reason=\"queue_full\"} 1"));
//! ```

/// A value that goes up and down (`inc`, `dec`, `set`); cloning shares it.
pub type Gauge = prometheus_client::metrics::gauge::Gauge;

/// A count that only goes up (`inc`, `inc_by`); cloning shares it. Its name
/// gets `_total` when encoded.
pub type Counter = prometheus_client::metrics::counter::Counter;

/// One [`Counter`] per label set `L` (e.g. `[(&'static str, &'static str); 1]`
/// for one label), created on first use with `get_or_create`.
pub type LabelledCounter<L> = prometheus_client::metrics::family::Family<L, Counter>;
