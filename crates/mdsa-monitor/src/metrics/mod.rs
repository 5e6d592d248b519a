//! Request metrics: counts, latency percentiles, throughput and error rate,
//! overall and per domain and model, with a history of periodic snapshots.
//!
//! Recording never takes a lock shared by all threads: counters are atomics,
//! per-domain and per-model state lives in sharded `DashMap`s (read-locked
//! per shard, write-locked only when a new key appears), and each latency
//! histogram is split into a few mutex-guarded shards picked by a per-thread
//! index, merged only when a snapshot is taken.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use prometheus_client::registry::{Metric, Registry};
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::error::MonitorError;
use crate::models::{ModelMetrics, ModelMetricsSnapshot};
use crate::record::{RequestRecord, RequestStatus, duration_to_us};

mod latency;
#[cfg(test)]
mod tests;

use latency::LatencyStats;

/// Key used for a request without a domain (router abstained) or without a
/// model, in snapshots and Prometheus labels.
pub const NONE_LABEL: &str = "none";

/// Latencies are recorded in microseconds and capped here: one hour. Anything
/// longer is a hung request, and a bounded range keeps histograms small.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Longest throughput window: one counter per second, so bounded.
const MAX_WINDOW_SECS: u64 = 3_600;

/// Three significant figures: every percentile is within 0.1% of the value
/// it stands for.
const SIGNIFICANT_FIGURES: u8 = 3;

/// Histogram shards per latency series. Enough to keep contention low on a
/// server's worth of threads; each shard allocated costs about 180 KiB, so
/// not more.
const SHARDS: usize = 4;

/// Upper bounds, in seconds, of the Prometheus latency histogram buckets:
/// from a cache hit (5 ms) to a long generation (2 min).
pub(crate) const BUCKET_BOUNDS_SECS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// [`BUCKET_BOUNDS_SECS`] in microseconds, compared against recorded values.
const BUCKET_BOUNDS_US: [u64; 15] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    20_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
];

/// Collector settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Throughput is averaged over this window, rounded up to whole seconds
    /// and capped at one hour (one counter per second is kept).
    pub window: Duration,
    /// Snapshots kept by the history; the oldest are dropped first.
    pub history_capacity: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            window: Duration::from_secs(60),
            // An hour at one snapshot every 10 s.
            history_capacity: 360,
        }
    }
}

/// One finished request, as the collector sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation<'a> {
    /// The routed domain; `None` is counted under [`NONE_LABEL`].
    pub domain: Option<&'a str>,
    /// The model; `None` is counted under [`NONE_LABEL`].
    pub model: Option<&'a str>,
    /// How it ended.
    pub status: RequestStatus,
    /// End-to-end latency.
    pub total: Duration,
    /// Prompt tokens.
    pub tokens_in: u32,
    /// Generated tokens.
    pub tokens_out: u32,
    /// Time to the first generated token, for streamed answers.
    pub time_to_first_token: Option<Duration>,
}

impl<'a> Observation<'a> {
    /// A request with `status` that took `total`, with no domain, model or
    /// tokens.
    pub fn new(status: RequestStatus, total: Duration) -> Self {
        Observation {
            domain: None,
            model: None,
            status,
            total,
            tokens_in: 0,
            tokens_out: 0,
            time_to_first_token: None,
        }
    }

    /// Sets the domain.
    #[must_use]
    pub fn domain(mut self, domain: &'a str) -> Self {
        self.domain = Some(domain);
        self
    }

    /// Sets the model.
    #[must_use]
    pub fn model(mut self, model: &'a str) -> Self {
        self.model = Some(model);
        self
    }

    /// Sets the token counts.
    #[must_use]
    pub fn tokens(mut self, tokens_in: u32, tokens_out: u32) -> Self {
        self.tokens_in = tokens_in;
        self.tokens_out = tokens_out;
        self
    }

    /// Sets the time to first token.
    #[must_use]
    pub fn time_to_first_token(mut self, ttft: Duration) -> Self {
        self.time_to_first_token = Some(ttft);
        self
    }
}

impl<'a> From<&'a RequestRecord> for Observation<'a> {
    fn from(r: &'a RequestRecord) -> Self {
        Observation {
            domain: r.domain.as_deref(),
            model: r.model.as_deref(),
            status: r.status,
            total: r.latency.total(),
            tokens_in: r.tokens_in,
            tokens_out: r.tokens_out,
            time_to_first_token: r.latency.first_token(),
        }
    }
}

/// Latency statistics in milliseconds. All zero when `count` is 0.
///
/// `min`, `max` and `avg` are exact (to the microsecond). Percentiles use
/// the nearest-rank definition: `pX` is the value at 1-based rank
/// `ceil(X/100 * count)` of the sorted samples. They come from an HDR
/// histogram and report the upper end of the sample's bucket (capped at
/// `max`), so they are never below the exact value and at most 0.1% above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub avg_ms: f64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// Requests per final status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    /// [`RequestStatus::Completed`].
    pub completed: u64,
    /// [`RequestStatus::Failed`].
    pub failed: u64,
    /// [`RequestStatus::Abstained`].
    pub abstained: u64,
    /// [`RequestStatus::Cancelled`].
    pub cancelled: u64,
    /// [`RequestStatus::Rejected`].
    pub rejected: u64,
}

impl StatusCounts {
    /// The count for `status`.
    pub fn get(&self, status: RequestStatus) -> u64 {
        match status {
            RequestStatus::Completed => self.completed,
            RequestStatus::Failed => self.failed,
            RequestStatus::Abstained => self.abstained,
            RequestStatus::Cancelled => self.cancelled,
            RequestStatus::Rejected => self.rejected,
        }
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        RequestStatus::ALL.into_iter().map(|s| self.get(s)).sum()
    }

    fn from_counters(counters: &[AtomicU64; 5]) -> Self {
        let get = |s: RequestStatus| counters[s.index()].load(Ordering::Relaxed);
        StatusCounts {
            completed: get(RequestStatus::Completed),
            failed: get(RequestStatus::Failed),
            abstained: get(RequestStatus::Abstained),
            cancelled: get(RequestStatus::Cancelled),
            rejected: get(RequestStatus::Rejected),
        }
    }
}

/// Metrics of one group of requests: all of them, one domain or one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    /// Requests recorded.
    pub requests: u64,
    /// Requests per status.
    pub status: StatusCounts,
    /// Failed requests over all requests (see [`RequestStatus::is_error`]);
    /// 0 when there were none.
    pub error_rate: f64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Generated tokens.
    pub tokens_out: u64,
    /// End-to-end latency.
    pub latency: LatencySummary,
    /// Time to first token, over the requests that reported one.
    pub time_to_first_token: LatencySummary,
}

/// Everything the collector knows at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// When the snapshot was taken.
    pub at: DateTime<Utc>,
    /// Seconds since the collector was created.
    pub uptime_secs: f64,
    /// Length of the throughput window, in seconds.
    pub window_secs: u64,
    /// Requests per second over the window (or since start, if shorter).
    pub throughput_rps: f64,
    /// All requests.
    pub total: GroupSnapshot,
    /// Per domain; unrouted requests under [`NONE_LABEL`].
    pub per_domain: BTreeMap<String, GroupSnapshot>,
    /// Per model; requests without a model under [`NONE_LABEL`].
    pub per_model: BTreeMap<String, GroupSnapshot>,
    /// What the model manager did: loads, evictions, resident bytes.
    #[serde(default)]
    pub model_residency: ModelMetricsSnapshot,
}

/// Counters and latency series for one group (all, a domain, a model).
#[derive(Default)]
struct Stats {
    status: [AtomicU64; 5],
    tokens_in: AtomicU64,
    tokens_out: AtomicU64,
    latency: LatencyStats,
    ttft: LatencyStats,
}

impl Stats {
    fn record(&self, obs: &Observation<'_>) {
        self.tokens_in
            .fetch_add(u64::from(obs.tokens_in), Ordering::Relaxed);
        self.tokens_out
            .fetch_add(u64::from(obs.tokens_out), Ordering::Relaxed);
        self.latency.record(duration_to_us(obs.total));
        if let Some(ttft) = obs.time_to_first_token {
            self.ttft.record(duration_to_us(ttft));
        }
        // Last, so a snapshot never counts a request whose latency is not
        // in yet.
        self.status[obs.status.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> GroupSnapshot {
        let status = StatusCounts::from_counters(&self.status);
        let requests = status.total();
        GroupSnapshot {
            requests,
            status,
            error_rate: ratio(status.failed, requests),
            tokens_in: self.tokens_in.load(Ordering::Relaxed),
            tokens_out: self.tokens_out.load(Ordering::Relaxed),
            latency: self.latency.summary(),
            time_to_first_token: self.ttft.summary(),
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Fixed-bucket histogram for Prometheus: exact, lock-free counts.
#[derive(Default)]
pub(crate) struct Buckets {
    /// One per bound in [`BUCKET_BOUNDS_US`], then `+Inf`.
    counts: [AtomicU64; 16],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Buckets {
    pub(crate) fn record(&self, us: u64) {
        let us = us.min(MAX_LATENCY_US);
        // Prometheus buckets are `le`: a value equal to a bound belongs in it.
        let index = BUCKET_BOUNDS_US.partition_point(|&bound| bound < us);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> BucketCounts {
        BucketCounts {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_secs: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// Counters for one (domain, model) pair, the label set of the Prometheus
/// series.
#[derive(Default)]
struct PairStats {
    status: [AtomicU64; 5],
    tokens_in: AtomicU64,
    tokens_out: AtomicU64,
    duration: Buckets,
    ttft: Buckets,
}

impl PairStats {
    fn record(&self, obs: &Observation<'_>) {
        self.tokens_in
            .fetch_add(u64::from(obs.tokens_in), Ordering::Relaxed);
        self.tokens_out
            .fetch_add(u64::from(obs.tokens_out), Ordering::Relaxed);
        self.duration.record(duration_to_us(obs.total));
        if let Some(ttft) = obs.time_to_first_token {
            self.ttft.record(duration_to_us(ttft));
        }
        self.status[obs.status.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// A fixed-bucket histogram read out: per-bucket (not cumulative) counts,
/// the last one for `+Inf`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BucketCounts {
    pub(crate) counts: [u64; 16],
    pub(crate) sum_secs: f64,
    pub(crate) count: u64,
}

/// One (domain, model) pair read out for the Prometheus exposition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PairRow {
    pub(crate) domain: String,
    pub(crate) model: String,
    pub(crate) status: StatusCounts,
    pub(crate) tokens_in: u64,
    pub(crate) tokens_out: u64,
    pub(crate) duration: BucketCounts,
    pub(crate) ttft: BucketCounts,
}

#[derive(Default)]
struct DomainEntry {
    stats: Stats,
    by_model: DashMap<String, Arc<PairStats>>,
}

/// Requests per second over a sliding window, without locks.
///
/// A ring of one slot per second; each slot packs the second it counts
/// (relative to the start, high 32 bits) and its count (low 32 bits) into
/// one atomic, so claiming a stale slot for a new second and counting in it
/// is a single compare-and-swap and no increment is ever lost.
struct Throughput {
    start_sec: i64,
    slots: Box<[AtomicU64]>,
}

impl Throughput {
    fn new(start_sec: i64, window_secs: u64) -> Self {
        Throughput {
            start_sec,
            slots: (0..window_secs.clamp(1, MAX_WINDOW_SECS))
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    fn window(&self) -> u64 {
        self.slots.len() as u64
    }

    fn relative(&self, now_sec: i64) -> u64 {
        // A clock stepping back before the start counts as second 0.
        now_sec
            .saturating_sub(self.start_sec)
            .clamp(0, i64::from(u32::MAX)) as u64
    }

    fn record(&self, now_sec: i64) {
        let sec = self.relative(now_sec);
        let slot = &self.slots[(sec % self.window()) as usize];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let slot_sec = current >> 32;
            let next = if slot_sec == sec {
                if current & 0xffff_ffff == 0xffff_ffff {
                    return; // Four billion requests in one second: saturate.
                }
                current + 1
            } else if slot_sec < sec {
                (sec << 32) | 1
            } else {
                // This thread stalled for a whole window and the slot moved
                // on; its request is outside the window anyway.
                return;
            };
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    fn rate(&self, now_sec: i64) -> f64 {
        let sec = self.relative(now_sec);
        let window = self.window();
        let oldest = (sec + 1).saturating_sub(window);
        let count: u64 = self
            .slots
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|v| (oldest..=sec).contains(&(v >> 32)))
            .map(|v| v & 0xffff_ffff)
            .sum();
        // Right after start the window is not full yet; dividing by it would
        // under-report.
        count as f64 / window.min(sec + 1) as f64
    }
}

struct Inner {
    clock: Arc<dyn Clock>,
    started_at: DateTime<Utc>,
    throughput: Throughput,
    global: Stats,
    domains: DashMap<String, Arc<DomainEntry>>,
    models: DashMap<String, Arc<Stats>>,
    history: Mutex<VecDeque<MetricsSnapshot>>,
    history_capacity: usize,
    registry: Mutex<Registry>,
    residency: ModelMetrics,
}

/// The metrics collector.
///
/// Cheap to clone: clones share the same state, so hand one to every
/// thread. All methods take `&self`.
#[derive(Clone)]
pub struct MetricsCollector {
    inner: Arc<Inner>,
}

impl fmt::Debug for MetricsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsCollector")
            .field("started_at", &self.inner.started_at)
            .field("window_secs", &self.inner.throughput.window())
            .field("domains", &self.inner.domains.len())
            .field("models", &self.inner.models.len())
            .finish_non_exhaustive()
    }
}

impl Default for MetricsCollector {
    fn default() -> Self {
        MetricsCollector::new(MetricsConfig::default())
    }
}

fn get_or_insert<V: Default>(map: &DashMap<String, Arc<V>>, key: &str) -> Arc<V> {
    // The common case is a read lock and no allocation; the key is copied
    // only the first time it is seen.
    if let Some(value) = map.get(key) {
        return Arc::clone(&value);
    }
    Arc::clone(&map.entry(key.to_owned()).or_default())
}

fn label(value: Option<&str>) -> &str {
    value.filter(|v| !v.is_empty()).unwrap_or(NONE_LABEL)
}

impl MetricsCollector {
    /// A collector using the system clock.
    pub fn new(config: MetricsConfig) -> Self {
        MetricsCollector::with_clock(config, Arc::new(SystemClock))
    }

    /// A collector reading time from `clock` (use a
    /// [`ManualClock`](crate::ManualClock) in tests).
    pub fn with_clock(config: MetricsConfig, clock: Arc<dyn Clock>) -> Self {
        let started_at = clock.now();
        let window_secs = config.window.as_secs() + u64::from(config.window.subsec_nanos() > 0);
        MetricsCollector {
            inner: Arc::new(Inner {
                throughput: Throughput::new(started_at.timestamp(), window_secs),
                clock,
                started_at,
                global: Stats::default(),
                domains: DashMap::new(),
                models: DashMap::new(),
                history: Mutex::new(VecDeque::new()),
                history_capacity: config.history_capacity,
                registry: Mutex::new(Registry::with_prefix("mdsa")),
                residency: ModelMetrics::default(),
            }),
        }
    }

    /// Records one finished request.
    ///
    /// Latencies above one hour are recorded as one hour.
    pub fn record(&self, obs: &Observation<'_>) {
        let inner = &*self.inner;
        inner.throughput.record(inner.clock.now().timestamp());
        inner.global.record(obs);
        let domain = get_or_insert(&inner.domains, label(obs.domain));
        domain.stats.record(obs);
        get_or_insert(&domain.by_model, label(obs.model)).record(obs);
        get_or_insert(&inner.models, label(obs.model)).record(obs);
    }

    /// Records a logged request (its total latency, tokens and time to
    /// first token).
    pub fn record_request(&self, record: &RequestRecord) {
        self.record(&Observation::from(record));
    }

    /// Requests per second over the configured window, or since start if
    /// the collector is younger than the window.
    pub fn throughput_rps(&self) -> f64 {
        self.inner
            .throughput
            .rate(self.inner.clock.now().timestamp())
    }

    /// Everything, now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let inner = &*self.inner;
        let at = inner.clock.now();
        let uptime = (at - inner.started_at).to_std().unwrap_or_default();
        MetricsSnapshot {
            at,
            uptime_secs: uptime.as_secs_f64(),
            window_secs: inner.throughput.window(),
            throughput_rps: inner.throughput.rate(at.timestamp()),
            total: inner.global.snapshot(),
            per_domain: inner
                .domains
                .iter()
                .map(|e| (e.key().clone(), e.value().stats.snapshot()))
                .collect(),
            per_model: inner
                .models
                .iter()
                .map(|e| (e.key().clone(), e.value().snapshot()))
                .collect(),
            model_residency: inner.residency.snapshot(),
        }
    }

    /// Model-manager metrics: loads, hits, misses, evictions, failures, load
    /// time and resident bytes per model and device.
    pub fn model_metrics(&self) -> &ModelMetrics {
        &self.inner.residency
    }

    /// Takes a snapshot, appends it to the history and returns it.
    pub fn take_snapshot_into_history(&self) -> MetricsSnapshot {
        let snapshot = self.snapshot();
        let capacity = self.inner.history_capacity;
        if capacity > 0 {
            let mut history = self
                .inner
                .history
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            while history.len() >= capacity {
                history.pop_front();
            }
            history.push_back(snapshot.clone());
        }
        snapshot
    }

    /// The snapshot history, oldest first.
    pub fn history(&self) -> Vec<MetricsSnapshot> {
        let history = self
            .inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        history.iter().cloned().collect()
    }

    /// Starts a background thread appending a snapshot to the history every
    /// `interval` (at least 10 ms). It stops when the handle is dropped.
    pub fn start_history(&self, interval: Duration) -> Result<HistoryHandle, MonitorError> {
        let interval = interval.max(Duration::from_millis(10));
        let (stop, stopped) = mpsc::channel::<()>();
        let collector = self.clone();
        let thread = std::thread::Builder::new()
            .name("mdsa-metrics-history".to_owned())
            .spawn(move || {
                // Any message or a dropped sender means stop; waiting on the
                // channel rather than sleeping makes stopping immediate.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    collector.take_snapshot_into_history();
                }
            })
            .map_err(|source| MonitorError::HistoryThread { source })?;
        Ok(HistoryHandle {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Registers an extra metric (from the model manager, the server, …)
    /// so it appears in [`encode_prometheus`](Self::encode_prometheus). The
    /// registry's prefix is `mdsa`, so `name` becomes `mdsa_<name>`.
    ///
    /// As with [`Registry::register`], a counter's name must not end in
    /// `_total`: the encoder appends it.
    pub fn register(&self, name: impl Into<String>, help: impl Into<String>, metric: impl Metric) {
        self.with_registry(|registry| registry.register(name, help, metric));
    }

    /// Runs `f` on the registry behind the exposition, for what
    /// [`register`](Self::register) does not cover: units, collectors,
    /// sub-registries.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut registry = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut registry)
    }

    /// The Prometheus exposition of everything: see the crate documentation
    /// for the metric names. It is OpenMetrics text, as prometheus-client
    /// writes it, ending with `# EOF`.
    pub fn encode_prometheus(&self) -> Result<String, MonitorError> {
        crate::prometheus::encode(self)
    }

    pub(crate) fn pair_rows(&self) -> Vec<PairRow> {
        let mut rows = Vec::new();
        for domain in self.inner.domains.iter() {
            for pair in domain.value().by_model.iter() {
                let p = pair.value();
                rows.push(PairRow {
                    domain: domain.key().clone(),
                    model: pair.key().clone(),
                    status: StatusCounts::from_counters(&p.status),
                    tokens_in: p.tokens_in.load(Ordering::Relaxed),
                    tokens_out: p.tokens_out.load(Ordering::Relaxed),
                    duration: p.duration.read(),
                    ttft: p.ttft.read(),
                });
            }
        }
        // Stable output order makes scrapes diffable.
        rows.sort_by(|a, b| (&a.domain, &a.model).cmp(&(&b.domain, &b.model)));
        rows
    }
}

/// Keeps the history thread of [`MetricsCollector::start_history`] running;
/// dropping it stops and joins the thread.
#[derive(Debug)]
pub struct HistoryHandle {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HistoryHandle {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Dropping the sender wakes the thread at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic in the thread has nothing left to clean up; dropping a
            // handle must not panic in turn.
            let _ = thread.join();
        }
    }
}

impl Drop for HistoryHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
