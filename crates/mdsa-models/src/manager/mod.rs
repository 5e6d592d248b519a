//! Which models are resident: loads on demand, one load per model however many
//! callers ask at once, eviction by measured bytes, never past the budget.
//!
//! [`ModelManager::get`] returns a [`ModelHandle`]; while any handle of a model
//! is alive the model is *in use* and is never evicted. A model that is not
//! resident is loaded by the first caller, without any manager lock held; the
//! others wait on that load and share its result, error included (a failed load
//! is not remembered: the next `get` tries again).
//!
//! Residency is limited by count ([`ManagerConfig::max_models`]) and by bytes
//! per device ([`ManagerConfig::budgets`]). The bytes are what the backend
//! measured after loading (weights as held, plus KV-cache reservations); before
//! a model's first load the backend's estimate is reserved instead. To make
//! room, idle models are evicted least recently used first, pinned ones last and
//! only when [`ManagerConfig::evict_pinned`] allows. If the room cannot be made
//! the caller gets [`ManagerError::DoesNotFit`], or waits up to
//! [`ManagerConfig::wait_for_release`] for models in use to be released.
//! The accounted bytes (resident plus reserved) never exceed a budget.

mod backend;
mod config;
mod error;
mod events;
mod eviction;
mod handle;
mod loading;
mod stats;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

pub use backend::LocalBackend;
pub use config::ManagerConfig;
pub use error::{ManagerError, NoRoom};
pub use events::{DOWNLOAD_EVENT_INTERVAL, Download, EvictReason, ModelEvent};
pub use handle::{ModelHandle, ResidentModel};
pub use stats::ManagerStats;

use eviction::{Sweeper, used_bytes};
use loading::LoadCell;
use stats::EventSink;

use mdsa_engine::{LOCAL_BACKEND, LoadedEngine, ModelBackend, ModelRegistry, ModelSpec};

/// A model in memory.
struct Resident {
    spec: ModelSpec,
    engine: LoadedEngine,
    weight_bytes: u64,
    kv_bytes: u64,
    device: String,
    /// Why the backend chose that device.
    device_reason: String,
    /// Handles alive; raised only under the state lock, so an evictor that sees
    /// 0 under the lock cannot race a new `get`.
    users: AtomicUsize,
    /// Microseconds since the manager's epoch (for idle TTLs).
    last_used_us: AtomicU64,
    /// Order of last use (for LRU): clock ticks can tie when loads take
    /// microseconds, a counter cannot.
    last_use_seq: AtomicU64,
}

impl Resident {
    fn bytes(&self) -> u64 {
        self.weight_bytes + self.kv_bytes
    }
}

/// One `get`'s claim on a resident model; the last clone of a handle drops it.
struct Lease {
    resident: Arc<Resident>,
    shared: Weak<Shared>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.touch(&self.resident);
            // Decrement and notify under the lock, so a caller waiting for room
            // cannot miss the wake-up between its check and its wait.
            let _state = shared.lock();
            self.resident.users.fetch_sub(1, Ordering::AcqRel);
            shared.released.notify_all();
        } else {
            self.resident.users.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

enum Slot {
    Loading {
        cell: Arc<LoadCell>,
        device: String,
        /// Bytes held for the load (0 until room was made).
        reserved: u64,
        /// Whether room was made: only then does the load count against the
        /// model limit, so loads waiting for room do not block each other.
        admitted: bool,
        /// Callers waiting on the load; each gets a handle when it succeeds.
        waiters: usize,
    },
    Resident(Arc<Resident>),
}

#[derive(Default)]
struct State {
    slots: HashMap<String, Slot>,
    pinned: HashSet<String>,
    /// Last measured size per id, reserved before a reload.
    measured: HashMap<String, u64>,
}

struct Shared {
    registry: RwLock<ModelRegistry>,
    backends: RwLock<HashMap<String, Arc<dyn ModelBackend>>>,
    config: ManagerConfig,
    state: Mutex<State>,
    /// Signalled when a handle is released or a reservation is given back.
    released: Condvar,
    /// Where every [`ModelEvent`] goes: the manager's own counters and the bus.
    events: EventSink,
    epoch: Instant,
    use_seq: AtomicU64,
}

/// Decides which models are resident. `Send + Sync`; share it with an `Arc`.
pub struct ModelManager {
    shared: Arc<Shared>,
    sweeper: Option<Sweeper>,
}

impl std::fmt::Debug for ModelManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelManager")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Builds a [`ModelManager`].
pub struct ManagerBuilder {
    registry: ModelRegistry,
    config: ManagerConfig,
    backends: Vec<Arc<dyn ModelBackend>>,
    bus: Option<mdsa_bus::Bus>,
}

impl ManagerBuilder {
    /// Limits and behaviour.
    pub fn config(mut self, config: ManagerConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds (or replaces, by name) a backend. [`LocalBackend`] is there unless replaced.
    pub fn backend(mut self, backend: Arc<dyn ModelBackend>) -> Self {
        self.backends.push(backend);
        self
    }

    /// Publishes a [`ModelEvent`] on `bus` for everything the manager does; metrics and
    /// anything else that counts observe it there ([`mdsa_bus::Bus::observe`]).
    pub fn bus(mut self, bus: mdsa_bus::Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The manager; starts the idle sweeper if the configuration asks for one.
    pub fn build(self) -> ModelManager {
        let mut backends: HashMap<String, Arc<dyn ModelBackend>> = HashMap::new();
        backends.insert(LOCAL_BACKEND.into(), Arc::new(LocalBackend::default()));
        for backend in self.backends {
            backends.insert(backend.name().to_string(), backend);
        }
        let pinned = self
            .registry
            .iter()
            .filter(|s| s.pinned)
            .map(|s| s.id.clone())
            .collect();
        let shared = Arc::new(Shared {
            registry: RwLock::new(self.registry),
            backends: RwLock::new(backends),
            state: Mutex::new(State {
                pinned,
                ..State::default()
            }),
            released: Condvar::new(),
            events: EventSink::new(self.bus.unwrap_or_default()),
            epoch: Instant::now(),
            use_seq: AtomicU64::new(0),
            config: self.config,
        });
        let sweeper = shared
            .config
            .sweep_interval
            .and_then(|interval| Sweeper::start(&shared, interval));
        ModelManager { shared, sweeper }
    }
}

impl ModelManager {
    /// A manager over `registry` with the default configuration (no limits).
    pub fn new(registry: ModelRegistry) -> Self {
        Self::builder(registry).build()
    }

    /// A builder for the configuration, backends, bus and metrics.
    pub fn builder(registry: ModelRegistry) -> ManagerBuilder {
        ManagerBuilder {
            registry,
            config: ManagerConfig::default(),
            backends: Vec::new(),
            bus: None,
        }
    }

    /// Adds (or replaces, by name) a backend at run time.
    pub fn register_backend(&self, backend: Arc<dyn ModelBackend>) {
        let mut backends = self
            .shared
            .backends
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        backends.insert(backend.name().to_string(), backend);
    }

    /// Registers another model at run time.
    pub fn register(&self, spec: ModelSpec) -> Result<(), ManagerError> {
        let pinned = spec.pinned.then(|| spec.id.clone());
        self.shared
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec)?;
        if let Some(id) = pinned {
            self.shared.lock().pinned.insert(id);
        }
        Ok(())
    }

    /// The spec registered under `id`.
    pub fn spec(&self, id: &str) -> Option<ModelSpec> {
        self.shared.spec(id).ok()
    }

    /// Every registered spec, in registration order.
    pub fn specs(&self) -> Vec<ModelSpec> {
        self.shared
            .registry
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.shared.config
    }

    /// The model, loading it if needed (once, however many callers ask at once).
    pub fn get(&self, id: &str) -> Result<ModelHandle, ManagerError> {
        self.shared.get(id, &mut |_| {})
    }

    /// [`get`](Self::get), telling `on_download` how the model's downloads
    /// advance (as [`ModelEvent::Downloading`] tells the bus), whether this
    /// call started the load or joined one in progress.
    pub fn get_with_progress(
        &self,
        id: &str,
        on_download: &mut dyn FnMut(&Download),
    ) -> Result<ModelHandle, ManagerError> {
        self.shared.get(id, on_download)
    }

    /// Makes the model resident without keeping a handle (counts as a `get`).
    pub fn load(&self, id: &str) -> Result<(), ManagerError> {
        self.get(id).map(drop)
    }

    /// Loads each model in turn (start-up preloading); stops at the first error.
    pub fn preload<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Result<(), ManagerError> {
        ids.into_iter().try_for_each(|id| self.load(id))
    }

    /// Loads every pinned model.
    pub fn preload_pinned(&self) -> Result<(), ManagerError> {
        let mut ids: Vec<String> = self.shared.lock().pinned.iter().cloned().collect();
        ids.sort();
        self.preload(ids.iter().map(String::as_str))
    }

    /// Unloads an idle model; `Ok(false)` if it was not resident, an error if
    /// it is in use or loading.
    pub fn unload(&self, id: &str) -> Result<bool, ManagerError> {
        self.shared.spec(id)?;
        let mut state = self.shared.lock();
        match state.slots.get(id) {
            None => Ok(false),
            Some(Slot::Loading { waiters, .. }) => Err(ManagerError::InUse {
                id: id.into(),
                users: waiters + 1,
            }),
            Some(Slot::Resident(r)) => {
                let users = r.users.load(Ordering::Acquire);
                if users > 0 {
                    return Err(ManagerError::InUse {
                        id: id.into(),
                        users,
                    });
                }
                let bytes = r.bytes();
                state.slots.remove(id);
                self.shared.released.notify_all();
                drop(state);
                self.shared.events.emit(ModelEvent::Unloaded {
                    id: id.into(),
                    bytes,
                });
                Ok(true)
            }
        }
    }

    /// Pins a model: evicted only last, and only if the configuration allows.
    pub fn pin(&self, id: &str) -> Result<(), ManagerError> {
        self.shared.spec(id)?;
        self.shared.lock().pinned.insert(id.to_string());
        Ok(())
    }

    /// Unpins a model.
    pub fn unpin(&self, id: &str) -> Result<(), ManagerError> {
        self.shared.spec(id)?;
        self.shared.lock().pinned.remove(id);
        Ok(())
    }

    /// Unloads idle models unused for longer than their TTL; returns their ids.
    pub fn sweep_idle(&self) -> Vec<String> {
        self.shared.sweep_idle()
    }

    /// Resident models, most recently used first.
    pub fn resident(&self) -> Vec<ResidentModel> {
        let now = self.shared.now_us();
        let state = self.shared.lock();
        let mut list: Vec<ResidentModel> = state
            .slots
            .values()
            .filter_map(|slot| match slot {
                Slot::Resident(r) => Some(ResidentModel {
                    id: r.spec.id.clone(),
                    device: r.device.clone(),
                    device_reason: r.device_reason.clone(),
                    bytes: r.bytes(),
                    weight_bytes: r.weight_bytes,
                    kv_bytes: r.kv_bytes,
                    pinned: state.pinned.contains(&r.spec.id),
                    in_use: r.users.load(Ordering::Acquire),
                    idle_for: Duration::from_micros(
                        now.saturating_sub(r.last_used_us.load(Ordering::Relaxed)),
                    ),
                    // Atomics only: cheap under the lock.
                    serving: match &r.engine {
                        mdsa_engine::LoadedEngine::Generator(generator) => {
                            generator.serving_stats()
                        }
                        _ => None,
                    },
                }),
                Slot::Loading { .. } => None,
            })
            .collect();
        list.sort_by_key(|m| m.idle_for);
        list
    }

    /// Bytes accounted on a device: resident models plus reservations of loads
    /// in flight. Never above the device's budget.
    pub fn accounted_bytes(&self, device: &str) -> u64 {
        used_bytes(&self.shared.lock(), device, None)
    }

    /// Whether the model is resident now.
    pub fn is_resident(&self, id: &str) -> bool {
        matches!(self.shared.lock().slots.get(id), Some(Slot::Resident(_)))
    }

    /// Tells every resident generator to drop what it keeps from earlier
    /// prompts (its cached prompt prefixes): the prompts changed, say, with
    /// the domains. Counts as no use of the models.
    pub fn forget_prefixes(&self) {
        let resident: Vec<Arc<Resident>> = self
            .shared
            .lock()
            .slots
            .values()
            .filter_map(|slot| match slot {
                Slot::Resident(r) => Some(Arc::clone(r)),
                Slot::Loading { .. } => None,
            })
            .collect();
        for model in resident {
            if let mdsa_engine::LoadedEngine::Generator(generator) = &model.engine {
                generator.forget_prefixes();
            }
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> ManagerStats {
        self.shared.events.stats()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self, r: &Resident) {
        r.last_used_us.store(self.now_us(), Ordering::Relaxed);
        r.last_use_seq.store(
            self.use_seq.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn spec(&self, id: &str) -> Result<ModelSpec, ManagerError> {
        self.registry
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| ManagerError::UnknownModel { id: id.into() })
    }
}

impl Drop for ModelManager {
    fn drop(&mut self) {
        drop(self.sweeper.take());
    }
}
