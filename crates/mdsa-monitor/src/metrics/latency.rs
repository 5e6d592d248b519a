//! One latency series: exact count, sum, min and max, and per-thread HDR
//! histogram shards merged for nearest-rank percentiles.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use hdrhistogram::Histogram;

use super::{LatencySummary, MAX_LATENCY_US, SHARDS, SIGNIFICANT_FIGURES};

/// Picks the histogram shard for the current thread. Threads get
/// consecutive indices, so up to `SHARDS` threads never share a shard.
pub(super) fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i) % SHARDS
}

pub(super) fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_FIGURES)
        .expect("constant histogram bounds are valid")
}

/// One latency series: exact count, sum, min and max plus an HDR histogram
/// for percentiles.
pub(super) struct LatencyStats {
    count: AtomicU64,
    sum_us: AtomicU64,
    min_us: AtomicU64,
    max_us: AtomicU64,
    /// Allocated lazily: a series only pays for the shards its threads use.
    shards: [Mutex<Option<Histogram<u64>>>; SHARDS],
}

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats {
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            min_us: AtomicU64::new(u64::MAX),
            max_us: AtomicU64::new(0),
            shards: std::array::from_fn(|_| Mutex::new(None)),
        }
    }
}

impl LatencyStats {
    pub(crate) fn record(&self, us: u64) {
        let us = us.min(MAX_LATENCY_US);
        self.min_us.fetch_min(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        {
            let mut shard = self.shards[shard_index()]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            shard
                .get_or_insert_with(new_histogram)
                .saturating_record(us);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn summary(&self) -> LatencySummary {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return LatencySummary::default();
        }
        let mut merged = new_histogram();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(h) = shard.as_ref() {
                // Same bounds everywhere, so adding cannot fail.
                let _ = merged.add(h);
            }
        }
        let min = self.min_us.load(Ordering::Relaxed);
        let max = self.max_us.load(Ordering::Relaxed);
        let ms = |us: u64| us as f64 / 1000.0;
        let percentile = |per_mille| ms(nearest_rank(&merged, per_mille, min, max));
        LatencySummary {
            count,
            avg_ms: self.sum_us.load(Ordering::Relaxed) as f64 / count as f64 / 1000.0,
            min_ms: ms(min.min(max)),
            max_ms: ms(max),
            p50_ms: percentile(500),
            p95_ms: percentile(950),
            p99_ms: percentile(990),
        }
    }
}

/// The nearest-rank percentile `per_mille / 10` of `hist`: the upper end of
/// the bucket holding the sample of rank `ceil(per_mille * n / 1000)`,
/// clamped to the exact `[min, max]`. Integer arithmetic on purpose:
/// `(0.95 * n).ceil()` in floating point can land one rank too high.
pub(super) fn nearest_rank(hist: &Histogram<u64>, per_mille: u64, min: u64, max: u64) -> u64 {
    let n = hist.len();
    if n == 0 {
        return 0;
    }
    let rank = (n.saturating_mul(per_mille)).div_ceil(1000).max(1);
    let mut seen = 0;
    for v in hist.iter_recorded() {
        seen += v.count_at_value();
        if seen >= rank {
            let value = hist.highest_equivalent(v.value_iterated_to());
            // min/max are updated before the histogram, so min <= max here;
            // checked anyway because `clamp` would panic otherwise.
            return if min <= max {
                value.clamp(min, max)
            } else {
                value
            };
        }
    }
    max
}
