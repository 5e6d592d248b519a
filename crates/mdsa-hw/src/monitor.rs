use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::detect::detect_memory;

/// One reading of memory use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySample {
    /// When it was taken.
    pub at: SystemTime,
    /// Resident set size of this process.
    pub rss_bytes: Option<u64>,
    /// RAM available to new allocations.
    pub available_bytes: Option<u64>,
    /// Total RAM.
    pub total_bytes: Option<u64>,
}

/// Samples this process's resident memory and the system's available memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryMonitor;

impl MemoryMonitor {
    /// Takes one sample now.
    pub fn sample() -> MemorySample {
        let memory = detect_memory();
        MemorySample {
            at: SystemTime::now(),
            rss_bytes: memory.process_rss_bytes,
            available_bytes: memory.available_bytes,
            total_bytes: memory.total_bytes,
        }
    }

    /// Samples every `interval` on a background thread, keeping the newest
    /// `capacity` samples. Sampling stops when the handle is dropped.
    pub fn start(interval: Duration, capacity: usize) -> MonitorHandle {
        Self::start_with(interval, capacity, |_| {})
    }

    /// Like [`MemoryMonitor::start`], and calls `on_sample` with every sample
    /// (for example to publish it on a bus or export it as a metric).
    pub fn start_with(
        interval: Duration,
        capacity: usize,
        on_sample: impl Fn(&MemorySample) + Send + 'static,
    ) -> MonitorHandle {
        let capacity = capacity.max(1);
        let samples = Arc::new(Mutex::new(VecDeque::with_capacity(capacity)));
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = Arc::clone(&samples);
        let thread = std::thread::Builder::new()
            .name("mdsa-memory-monitor".into())
            .spawn(move || {
                loop {
                    let sample = Self::sample();
                    on_sample(&sample);
                    {
                        let mut ring = shared.lock().unwrap_or_else(PoisonError::into_inner);
                        if ring.len() == capacity {
                            ring.pop_front();
                        }
                        ring.push_back(sample);
                    }
                    // Waiting on the channel (not sleeping) lets drop stop us at once.
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
            .ok();
        MonitorHandle {
            samples,
            stop: Some(stop),
            thread,
        }
    }
}

/// A running memory monitor; dropping it stops the sampling thread.
#[derive(Debug)]
pub struct MonitorHandle {
    samples: Arc<Mutex<VecDeque<MemorySample>>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MonitorHandle {
    /// The samples kept so far, oldest first.
    pub fn samples(&self) -> Vec<MemorySample> {
        self.lock().iter().copied().collect()
    }

    /// The newest sample, if any was taken yet.
    pub fn latest(&self) -> Option<MemorySample> {
        self.lock().back().copied()
    }

    /// The highest RSS among the kept samples.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        self.lock().iter().filter_map(|s| s.rss_bytes).max()
    }

    /// Whether the sampling thread could be started.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<MemorySample>> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    #[test]
    fn a_sample_reads_rss_and_available_memory() {
        let sample = MemoryMonitor::sample();
        assert!(sample.rss_bytes.is_some_and(|b| b > 0));
        assert!(sample.available_bytes.is_some_and(|b| b > 0));
    }

    #[test]
    fn interval_sampling_keeps_a_bounded_history_and_stops_on_drop() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let handle = MemoryMonitor::start_with(Duration::from_millis(1), 3, move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while calls.load(Ordering::SeqCst) < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(calls.load(Ordering::SeqCst) >= 5, "sampler did not run");
        assert!(handle.is_running());
        let samples = handle.samples();
        assert_eq!(samples.len(), 3, "history is bounded by capacity");
        assert!(samples.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(handle.latest(), samples.last().copied());
        assert!(handle.peak_rss_bytes().is_some());
        drop(handle);
        let after_drop = calls.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            after_drop,
            "sampling went on after drop"
        );
    }
}
