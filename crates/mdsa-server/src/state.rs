//! What every handler shares: the `Mdsa` instance, the limits, and the
//! admission gate that bounds how many requests run and wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::http::StatusCode;
use mdsa::Mdsa;
use mdsa::monitor::{Gauge, LabelledCounter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::ApiKeys;
use crate::config::Limits;
use crate::error::ApiError;

/// The server's shared state. Cheap to clone; build it with
/// [`AppState::new`] to mount mdsa's routes in your own axum application.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    mdsa: Mdsa,
    limits: Limits,
    keys: ApiKeys,
    admission: Admission,
    draining: AtomicBool,
    started: Instant,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over `mdsa` with `limits`; registers the server's gauges
    /// (`mdsa_queue_depth`, `mdsa_inflight_requests`,
    /// `mdsa_rejected_requests_total`) with mdsa's metrics.
    pub fn new(mdsa: Mdsa, limits: Limits) -> Self {
        Self::with_keys(mdsa, limits, ApiKeys::default())
    }

    /// Like [`AppState::new`], with bearer keys for the API and admin routes.
    pub fn with_keys(mdsa: Mdsa, limits: Limits, keys: ApiKeys) -> Self {
        let admission = Admission::new(&limits);
        let metrics = mdsa.metrics();
        metrics.register(
            "queue_depth",
            "Requests waiting for a slot to run",
            admission.waiting.clone(),
        );
        metrics.register(
            "inflight_requests",
            "Requests running models now",
            admission.running.clone(),
        );
        metrics.register(
            "rejected_requests",
            "Requests turned away by the server's limits, by reason",
            admission.rejected.clone(),
        );
        Self {
            inner: Arc::new(Shared {
                mdsa,
                limits,
                keys,
                admission,
                draining: AtomicBool::new(false),
                started: Instant::now(),
            }),
        }
    }

    /// The mdsa instance requests run on.
    pub fn mdsa(&self) -> &Mdsa {
        &self.inner.mdsa
    }

    /// The bearer keys in force.
    pub fn keys(&self) -> &ApiKeys {
        &self.inner.keys
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// When the state was built.
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    /// Whether the server is shutting down (new work gets 503, `/ready` fails).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Starts draining: requests already admitted finish, new ones are refused.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Requests waiting for a slot.
    pub fn queue_depth(&self) -> i64 {
        self.inner.admission.waiting.get()
    }

    /// Requests running now.
    pub fn in_flight(&self) -> i64 {
        self.inner.admission.running.get()
    }

    /// Waits for a slot to run a model: 503 while draining or after the
    /// queue timeout, 429 when the queue is full. The slot is held until the
    /// returned permit is dropped, which for a generation is when the model
    /// stops, not when the client goes away.
    pub async fn admit(&self) -> Result<Permit, ApiError> {
        let admission = &self.inner.admission;
        if self.is_draining() {
            admission.reject("shutting_down");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; retry on another replica",
            ));
        }
        let semaphore = Arc::clone(&admission.slots);
        // Fast path: a free slot, no queueing.
        if let Ok(permit) = Arc::clone(&semaphore).try_acquire_owned() {
            return Ok(Permit::new(permit, admission.running.clone()));
        }
        let limits = &self.inner.limits;
        // Count ourselves in the queue first, so that two requests racing for
        // the last queue place cannot both get it.
        let depth = admission.waiting.inc() + 1;
        let _leave = scopeguard(|| {
            admission.waiting.dec();
        });
        if depth > limits.max_queue as i64 {
            admission.reject("queue_full");
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!(
                    "{} requests are running and {} waiting (the most allowed); retry later",
                    limits.max_concurrent, limits.max_queue
                ),
            ));
        }
        match tokio::time::timeout(limits.queue_timeout, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Permit::new(permit, admission.running.clone())),
            Ok(Err(_closed)) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            )),
            Err(_elapsed) => {
                admission.reject("queue_timeout");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue_timeout",
                    format!(
                        "waited {:?} for one of {} slots; the server is overloaded",
                        limits.queue_timeout, limits.max_concurrent
                    ),
                ))
            }
        }
    }

    /// Waits until no admitted request is running, or `timeout` passes;
    /// returns whether everything finished.
    pub async fn drained(&self, timeout: std::time::Duration) -> bool {
        let slots = self.inner.limits.max_concurrent.max(1) as u32;
        let all = Arc::clone(&self.inner.admission.slots).acquire_many_owned(slots);
        tokio::time::timeout(timeout, all).await.is_ok()
    }
}

/// Runs `f` when dropped (on every exit path of an async function, including
/// the caller dropping its future).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

struct Admission {
    slots: Arc<Semaphore>,
    waiting: Gauge,
    running: Gauge,
    rejected: LabelledCounter<[(&'static str, &'static str); 1]>,
}

impl Admission {
    fn new(limits: &Limits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            waiting: Gauge::default(),
            running: Gauge::default(),
            rejected: LabelledCounter::default(),
        }
    }

    fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&[("reason", reason)]).inc();
    }
}

/// A running request's slot; counted in `mdsa_inflight_requests` until dropped.
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    running: Gauge,
}

impl Permit {
    fn new(permit: OwnedSemaphorePermit, running: Gauge) -> Self {
        running.inc();
        Self {
            _permit: permit,
            running,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.running.dec();
    }
}
