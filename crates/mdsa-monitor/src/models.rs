//! Model-manager metrics: what was loaded, hit, missed, evicted or failed, how
//! long loads took, and how many bytes each model holds on which device.
//!
//! The manager reports through these methods; the numbers show up in
//! [`MetricsSnapshot::model_residency`](crate::MetricsSnapshot::model_residency)
//! and in the Prometheus exposition. Per-device bytes are summed from the
//! per-model ones at read time, so the two never disagree.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::metrics::{BucketCounts, Buckets};
use crate::record::duration_to_us;

/// Counters of one model.
#[derive(Default)]
struct ModelStats {
    loads: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    unloads: AtomicU64,
    failures: AtomicU64,
    prefix_hits: AtomicU64,
    prefix_misses: AtomicU64,
    cached_prompt_tokens: AtomicU64,
    serving: Mutex<ModelServing>,
    load_duration: Buckets,
    resident_bytes: AtomicU64,
    device: Mutex<String>,
}

impl ModelStats {
    /// A model that left memory runs nothing and holds no keys or values;
    /// its pass counts stay (counters do not go back).
    fn forget_running(&self) {
        let mut serving = self.serving.lock().unwrap_or_else(PoisonError::into_inner);
        serving.active_sequences = 0;
        serving.kv_cache_bytes = 0;
    }
}

/// Model-manager counters, shared by every clone of the collector.
#[derive(Default)]
pub struct ModelMetrics {
    models: DashMap<String, Arc<ModelStats>>,
}

impl std::fmt::Debug for ModelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelMetrics")
            .field("models", &self.models.len())
            .finish()
    }
}

/// One model's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelResidency {
    /// Loads finished.
    pub loads: u64,
    /// Requests that found it resident.
    pub hits: u64,
    /// Requests that did not.
    pub misses: u64,
    /// Times it was evicted.
    pub evictions: u64,
    /// Times it was unloaded on request.
    pub unloads: u64,
    /// Failed loads.
    pub failures: u64,
    /// Prompts that started with a prefix the generator kept.
    #[serde(default)]
    pub prefix_hits: u64,
    /// Prompts that did not.
    #[serde(default)]
    pub prefix_misses: u64,
    /// Prompt tokens taken from kept prefixes instead of being run.
    #[serde(default)]
    pub cached_prompt_tokens: u64,
    /// How its generator batches, as last reported.
    #[serde(default)]
    pub serving: ModelServing,
    /// Total seconds spent loading.
    pub load_seconds: f64,
    /// Bytes resident now (0 when not loaded).
    pub resident_bytes: u64,
    /// The device it was last loaded on.
    pub device: String,
}

/// A batching generator's figures ([`ModelMetrics::record_serving`]): its
/// passes since it loaded, and what it runs and holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelServing {
    /// Batched forward passes run.
    pub batch_steps: u64,
    /// Sequences summed over those passes (÷ steps: the mean batch size).
    pub batch_sequences: u64,
    /// The most sequences one pass ran.
    pub largest_batch: u64,
    /// Sequences running now.
    pub active_sequences: u64,
    /// Bytes of keys and values held now.
    pub kv_cache_bytes: u64,
}

impl ModelServing {
    /// Sequences per pass on average; 0 before the first pass.
    pub fn mean_batch(&self) -> f64 {
        if self.batch_steps == 0 {
            0.0
        } else {
            self.batch_sequences as f64 / self.batch_steps as f64
        }
    }
}

/// Everything [`ModelMetrics`] knows, at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelMetricsSnapshot {
    /// Per model id.
    pub per_model: BTreeMap<String, ModelResidency>,
    /// Resident bytes per device.
    pub per_device: BTreeMap<String, u64>,
}

/// A model's row for the Prometheus exposition.
#[derive(Debug)]
pub(crate) struct ModelRow {
    pub(crate) model: String,
    pub(crate) figures: ModelResidency,
    pub(crate) load_duration: BucketCounts,
}

impl ModelMetrics {
    fn entry(&self, model: &str) -> Arc<ModelStats> {
        if let Some(stats) = self.models.get(model) {
            return Arc::clone(&stats);
        }
        Arc::clone(&self.models.entry(model.to_owned()).or_default())
    }

    /// A finished load: its wall time and the bytes now resident on `device`.
    pub fn record_load(&self, model: &str, device: &str, duration: Duration, bytes: u64) {
        let stats = self.entry(model);
        stats.loads.fetch_add(1, Ordering::Relaxed);
        stats.load_duration.record(duration_to_us(duration));
        stats.resident_bytes.store(bytes, Ordering::Relaxed);
        *stats.device.lock().unwrap_or_else(PoisonError::into_inner) = device.to_owned();
    }

    /// A request that found the model resident.
    pub fn record_hit(&self, model: &str) {
        self.entry(model).hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A request that did not.
    pub fn record_miss(&self, model: &str) {
        self.entry(model).misses.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed load.
    pub fn record_failure(&self, model: &str) {
        self.entry(model).failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A generation's prompt: `cached` of its tokens came from a kept prefix
    /// (a hit when any did).
    pub fn record_prompt(&self, model: &str, cached: usize) {
        let stats = self.entry(model);
        if cached > 0 {
            stats.prefix_hits.fetch_add(1, Ordering::Relaxed);
            stats
                .cached_prompt_tokens
                .fetch_add(cached as u64, Ordering::Relaxed);
        } else {
            stats.prefix_misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A generator's batching figures now (they replace the last report).
    pub fn record_serving(&self, model: &str, serving: ModelServing) {
        *self
            .entry(model)
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = serving;
    }

    /// An eviction; the model holds no bytes any more.
    pub fn record_eviction(&self, model: &str) {
        let stats = self.entry(model);
        stats.evictions.fetch_add(1, Ordering::Relaxed);
        stats.resident_bytes.store(0, Ordering::Relaxed);
        stats.forget_running();
    }

    /// An unload on request; the model holds no bytes any more.
    pub fn record_unload(&self, model: &str) {
        let stats = self.entry(model);
        stats.unloads.fetch_add(1, Ordering::Relaxed);
        stats.resident_bytes.store(0, Ordering::Relaxed);
        stats.forget_running();
    }

    pub(crate) fn rows(&self) -> Vec<ModelRow> {
        let mut rows: Vec<ModelRow> = self
            .models
            .iter()
            .map(|e| {
                let s = e.value();
                let load_duration = s.load_duration.read();
                let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
                ModelRow {
                    model: e.key().clone(),
                    figures: ModelResidency {
                        loads: read(&s.loads),
                        hits: read(&s.hits),
                        misses: read(&s.misses),
                        evictions: read(&s.evictions),
                        unloads: read(&s.unloads),
                        failures: read(&s.failures),
                        prefix_hits: read(&s.prefix_hits),
                        prefix_misses: read(&s.prefix_misses),
                        cached_prompt_tokens: read(&s.cached_prompt_tokens),
                        serving: *s.serving.lock().unwrap_or_else(PoisonError::into_inner),
                        load_seconds: load_duration.sum_secs,
                        resident_bytes: read(&s.resident_bytes),
                        device: s
                            .device
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .clone(),
                    },
                    load_duration,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.model.cmp(&b.model));
        rows
    }

    /// Everything, now.
    pub fn snapshot(&self) -> ModelMetricsSnapshot {
        let mut snapshot = ModelMetricsSnapshot::default();
        for row in self.rows() {
            if row.figures.resident_bytes > 0 {
                *snapshot
                    .per_device
                    .entry(row.figures.device.clone())
                    .or_default() += row.figures.resident_bytes;
            }
            snapshot.per_model.insert(row.model, row.figures);
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_follow_loads_and_evictions_and_sum_per_device() {
        let m = ModelMetrics::default();
        m.record_load("a", "cpu", Duration::from_millis(20), 100);
        m.record_load("b", "cpu", Duration::from_millis(30), 50);
        m.record_load("c", "gpu:0", Duration::from_millis(30), 7);
        m.record_hit("a");
        m.record_miss("a");
        m.record_eviction("b");
        m.record_prompt("a", 0);
        m.record_prompt("a", 120);
        let s = m.snapshot();
        let a = &s.per_model["a"];
        assert_eq!(
            (a.prefix_hits, a.prefix_misses, a.cached_prompt_tokens),
            (1, 1, 120)
        );
        assert_eq!(s.per_device["cpu"], 100);
        assert_eq!(s.per_device["gpu:0"], 7);
        assert_eq!(s.per_model["a"].hits, 1);
        assert_eq!(s.per_model["b"].evictions, 1);
        assert_eq!(s.per_model["b"].resident_bytes, 0);
        assert!((s.per_model["a"].load_seconds - 0.02).abs() < 1e-9);
    }
}
