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
mod error;
mod events;
mod stats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use backend::LocalBackend;
pub use error::{ManagerError, NoRoom};
pub use events::{EvictReason, ModelEvent};
pub use stats::ManagerStats;

use stats::EventSink;

use mdsa_engine::{
    Embedder, LOCAL_BACKEND, LoadedEngine, ModelBackend, ModelError, ModelRegistry, ModelSpec,
    TextGenerator,
};

/// Limits and behaviour of a [`ModelManager`].
#[derive(Debug, Clone, Default)]
pub struct ManagerConfig {
    /// Most models resident (or loading) at once; `None`: no count limit.
    pub max_models: Option<usize>,
    /// Byte budget per device label (`cpu`, `gpu:0`, ...); a device without an
    /// entry has no byte limit. [`ManagerConfig::from_budget`] fills it from
    /// mdsa-hw.
    pub budgets: BTreeMap<String, u64>,
    /// When a model does not fit because others are in use, wait this long for
    /// them to be released before failing; `None` fails at once.
    pub wait_for_release: Option<Duration>,
    /// Whether pinned models may be evicted (last) to make room.
    pub evict_pinned: bool,
    /// How often a background thread unloads models past their idle TTL;
    /// `None`: only [`ModelManager::sweep_idle`] does.
    pub sweep_interval: Option<Duration>,
}

impl ManagerConfig {
    /// Budgets from mdsa-hw's memory budget: `cpu` and `gpu:N` where known.
    pub fn from_budget(budget: &mdsa_hw::MemoryBudget) -> Self {
        let mut budgets = BTreeMap::new();
        if let Some(bytes) = budget.cpu_bytes {
            budgets.insert("cpu".to_string(), bytes);
        }
        for (index, bytes) in budget.gpu_bytes.iter().enumerate() {
            if let Some(bytes) = bytes {
                budgets.insert(format!("gpu:{index}"), *bytes);
            }
        }
        Self {
            budgets,
            sweep_interval: Some(Duration::from_secs(10)),
            ..Self::default()
        }
    }

    /// Detects this machine and derives the budgets from `config`
    /// (by default 70 % of available RAM, 90 % of each GPU's memory).
    pub fn from_hardware(config: &mdsa_hw::BudgetConfig) -> Result<Self, mdsa_hw::HwError> {
        let profile = mdsa_hw::HardwareDetector::detect();
        Ok(Self::from_budget(&mdsa_hw::MemoryBudget::from_profile(
            &profile, config,
        )?))
    }

    /// Sets one device's byte budget.
    pub fn with_budget(mut self, device: impl Into<String>, bytes: u64) -> Self {
        self.budgets.insert(device.into(), bytes);
        self
    }
}

/// One resident model, as [`ModelManager::resident`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentModel {
    /// The id.
    pub id: String,
    /// Device label.
    pub device: String,
    /// Weights plus KV reservation.
    pub bytes: u64,
    /// Weights as loaded.
    pub weight_bytes: u64,
    /// KV-cache reservation.
    pub kv_bytes: u64,
    /// Whether it is pinned.
    pub pinned: bool,
    /// Handles alive.
    pub in_use: usize,
    /// Time since it was last handed out or released.
    pub idle_for: Duration,
}

/// A resident model. Holding it (or a clone) keeps the model in memory.
#[derive(Clone)]
pub struct ModelHandle {
    lease: Arc<Lease>,
}

impl std::fmt::Debug for ModelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelHandle")
            .field("id", &self.id())
            .field("device", &self.device())
            .field("resident_bytes", &self.resident_bytes())
            .finish()
    }
}

impl ModelHandle {
    /// The model's id.
    pub fn id(&self) -> &str {
        &self.lease.resident.spec.id
    }

    /// Its spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.lease.resident.spec
    }

    /// Weights plus KV reservation, as measured at load.
    pub fn resident_bytes(&self) -> u64 {
        self.lease.resident.bytes()
    }

    /// Weights as loaded.
    pub fn weight_bytes(&self) -> u64 {
        self.lease.resident.weight_bytes
    }

    /// KV-cache reservation.
    pub fn kv_bytes(&self) -> u64 {
        self.lease.resident.kv_bytes
    }

    /// Device label.
    pub fn device(&self) -> &str {
        &self.lease.resident.device
    }

    /// The engine.
    pub fn engine(&self) -> &LoadedEngine {
        &self.lease.resident.engine
    }

    /// The encoder, if this model is one.
    pub fn as_embedder(&self) -> Option<&Arc<dyn Embedder>> {
        match &self.lease.resident.engine {
            LoadedEngine::Encoder(e) => Some(e),
            LoadedEngine::Generator(_) => None,
        }
    }

    /// The generator, if this model is one.
    pub fn as_generator(&self) -> Option<&Arc<dyn TextGenerator>> {
        match &self.lease.resident.engine {
            LoadedEngine::Generator(g) => Some(g),
            LoadedEngine::Encoder(_) => None,
        }
    }
}

/// A model in memory.
struct Resident {
    spec: ModelSpec,
    engine: LoadedEngine,
    weight_bytes: u64,
    kv_bytes: u64,
    device: String,
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

/// The outcome of one load, shared by everyone who waited on it.
#[derive(Default)]
struct LoadCell {
    result: Mutex<Option<Result<Arc<Resident>, ManagerError>>>,
    done: Condvar,
}

impl LoadCell {
    fn finish(&self, result: Result<Arc<Resident>, ManagerError>) {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        self.done.notify_all();
    }

    fn wait(&self) -> Result<Arc<Resident>, ManagerError> {
        let mut result = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(result) = result.as_ref() {
                return result.clone();
            }
            result = self
                .done
                .wait(result)
                .unwrap_or_else(PoisonError::into_inner);
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
        self.shared.get(id)
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
                    bytes: r.bytes(),
                    weight_bytes: r.weight_bytes,
                    kv_bytes: r.kv_bytes,
                    pinned: state.pinned.contains(&r.spec.id),
                    in_use: r.users.load(Ordering::Acquire),
                    idle_for: Duration::from_micros(
                        now.saturating_sub(r.last_used_us.load(Ordering::Relaxed)),
                    ),
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

    /// Counters since creation.
    pub fn stats(&self) -> ManagerStats {
        self.shared.events.stats()
    }
}

/// Bytes resident or reserved on `device`, leaving out `except`'s own slot.
fn used_bytes(state: &State, device: &str, except: Option<&str>) -> u64 {
    state
        .slots
        .iter()
        .filter(|(id, _)| Some(id.as_str()) != except)
        .map(|(_, slot)| match slot {
            Slot::Resident(r) if r.device == device => r.bytes(),
            Slot::Loading {
                device: d,
                reserved,
                ..
            } if d == device => *reserved,
            _ => 0,
        })
        .sum()
}

/// Why room could not be made.
enum Shortfall {
    /// Not even evicting everything would help.
    Never,
    /// Models in use (or loading) stand in the way.
    Blocked,
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

    fn handle(self: &Arc<Self>, resident: Arc<Resident>) -> ModelHandle {
        ModelHandle {
            lease: Arc::new(Lease {
                resident,
                shared: Arc::downgrade(self),
            }),
        }
    }

    fn get(self: &Arc<Self>, id: &str) -> Result<ModelHandle, ManagerError> {
        let spec = self.spec(id)?;
        let mut state = self.lock();
        match state.slots.get_mut(id) {
            Some(Slot::Resident(r)) => {
                r.users.fetch_add(1, Ordering::AcqRel);
                self.touch(r);
                let r = Arc::clone(r);
                drop(state);
                self.events.emit(ModelEvent::Hit { id: id.into() });
                return Ok(self.handle(r));
            }
            Some(Slot::Loading { cell, waiters, .. }) => {
                // The loader counts us in when it commits: the handle's user
                // count is raised for us before anyone can evict the model.
                *waiters += 1;
                let cell = Arc::clone(cell);
                drop(state);
                self.events.emit(ModelEvent::Miss {
                    id: id.into(),
                    joined: true,
                });
                return cell.wait().map(|r| self.handle(r));
            }
            None => {}
        }
        let cell = Arc::new(LoadCell::default());
        state.slots.insert(
            id.to_string(),
            Slot::Loading {
                cell: Arc::clone(&cell),
                device: String::new(),
                reserved: 0,
                admitted: false,
                waiters: 0,
            },
        );
        drop(state);
        self.events.emit(ModelEvent::Miss {
            id: id.into(),
            joined: false,
        });
        let result = self.load_into_slot(&spec);
        if let Err(error) = &result {
            let mut state = self.lock();
            if matches!(state.slots.get(id), Some(Slot::Loading { cell: c, .. }) if Arc::ptr_eq(c, &cell))
            {
                state.slots.remove(id);
            }
            // A reservation was given back: someone waiting for room may fit now.
            self.released.notify_all();
            drop(state);
            self.events.emit(ModelEvent::LoadFailed {
                id: id.into(),
                error: error.to_string(),
            });
        }
        cell.finish(result.clone());
        result.map(|r| self.handle(r))
    }

    /// Reserves room, loads without the lock, and commits the model to its slot
    /// with one user per caller (the loader and every waiter).
    fn load_into_slot(self: &Arc<Self>, spec: &ModelSpec) -> Result<Arc<Resident>, ManagerError> {
        let id = spec.id.as_str();
        let backend = {
            let backends = self.backends.read().unwrap_or_else(PoisonError::into_inner);
            match backends.get(&spec.backend) {
                Some(b) => Arc::clone(b),
                None => {
                    let mut registered: Vec<&str> = backends.keys().map(String::as_str).collect();
                    registered.sort_unstable();
                    return Err(ManagerError::UnknownBackend {
                        id: id.into(),
                        backend: spec.backend.clone(),
                        registered: registered.join(", "),
                    });
                }
            }
        };
        let load_error = |e: ModelError| ManagerError::Load {
            id: id.into(),
            source: Arc::new(e),
        };
        let plan = backend.plan(spec).map_err(load_error)?;
        let mut state = self.lock();
        let reserve = state
            .measured
            .get(id)
            .copied()
            .unwrap_or(plan.estimated_bytes);
        state = self.make_room(state, id, &plan.device, reserve)?;
        if let Some(Slot::Loading {
            device,
            reserved,
            admitted,
            ..
        }) = state.slots.get_mut(id)
        {
            *device = plan.device.clone();
            *reserved = reserve;
            *admitted = true;
        }
        drop(state);
        self.events.emit(ModelEvent::LoadStarted {
            id: id.into(),
            device: plan.device.clone(),
            reserved_bytes: reserve,
        });

        let started = Instant::now();
        // A panicking backend must not leave waiters blocked on a load that
        // will never finish.
        let loaded = std::panic::catch_unwind(AssertUnwindSafe(|| backend.load(spec)))
            .unwrap_or_else(|payload| {
                // The panic's message, when it has one, says what went wrong.
                let said = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .map_or_else(String::new, |s| format!(": {s}"));
                Err(ModelError::Backend(format!(
                    "backend {:?} panicked while loading{said}",
                    spec.backend
                )))
            })
            .map_err(load_error)?;
        let duration = started.elapsed();

        let mut state = self.lock();
        let bytes = loaded.resident_bytes();
        state.measured.insert(id.to_string(), bytes);
        // Swap the reservation for the measured size, evicting more if the
        // estimate was short.
        if let Some(Slot::Loading { reserved, .. }) = state.slots.get_mut(id) {
            *reserved = 0;
        }
        state = self.make_room(state, id, &loaded.device, bytes)?;
        // Only the loader removes a Loading slot it owns, so it is still there.
        let waiters = match state.slots.get(id) {
            Some(Slot::Loading { waiters, .. }) => *waiters,
            _ => 0,
        };
        let resident = Arc::new(Resident {
            spec: spec.clone(),
            engine: loaded.engine,
            weight_bytes: loaded.weight_bytes,
            kv_bytes: loaded.kv_bytes,
            device: loaded.device,
            users: AtomicUsize::new(1 + waiters),
            last_used_us: AtomicU64::new(self.now_us()),
            last_use_seq: AtomicU64::new(self.use_seq.fetch_add(1, Ordering::Relaxed)),
        });
        state
            .slots
            .insert(id.to_string(), Slot::Resident(Arc::clone(&resident)));
        drop(state);
        self.events.emit(ModelEvent::Loaded {
            id: id.into(),
            device: resident.device.clone(),
            weight_bytes: resident.weight_bytes,
            kv_bytes: resident.kv_bytes,
            duration,
        });
        Ok(resident)
    }

    /// Evicts idle models until `need` more bytes fit on `device` and one more
    /// model fits the count, waiting for releases if configured.
    fn make_room<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        id: &str,
        device: &str,
        need: u64,
    ) -> Result<MutexGuard<'a, State>, ManagerError> {
        let deadline = self
            .config
            .wait_for_release
            .map(|d| (d, Instant::now() + d));
        loop {
            match self.try_make_room(&mut state, id, device, need) {
                Ok(()) => return Ok(state),
                Err(Shortfall::Blocked) if deadline.is_some() => {
                    let (waited, deadline) = deadline.unwrap_or((Duration::ZERO, Instant::now()));
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(ManagerError::Timeout {
                            id: id.into(),
                            waited,
                        });
                    }
                    state = self
                        .released
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                Err(_) => return Err(self.does_not_fit(&state, id, device, need)),
            }
        }
    }

    fn does_not_fit(&self, state: &State, id: &str, device: &str, need: u64) -> ManagerError {
        let mut in_use: Vec<String> = state
            .slots
            .iter()
            .filter(|(other, _)| other.as_str() != id)
            .filter(|(_, slot)| match slot {
                Slot::Resident(r) => r.users.load(Ordering::Acquire) > 0,
                Slot::Loading { .. } => true,
            })
            .map(|(other, _)| other.clone())
            .collect();
        in_use.sort();
        ManagerError::DoesNotFit(Box::new(NoRoom {
            id: id.into(),
            device: device.into(),
            needed: need,
            budget: self.config.budgets.get(device).copied(),
            resident: used_bytes(state, device, Some(id)),
            count: state.slots.len().saturating_sub(1),
            max_models: self.config.max_models,
            in_use,
        }))
    }

    /// Picks the victims first and evicts only if they are enough: failing to
    /// fit should not also throw away idle models for nothing.
    fn try_make_room(
        &self,
        state: &mut State,
        id: &str,
        device: &str,
        need: u64,
    ) -> Result<(), Shortfall> {
        let budget = self.config.budgets.get(device).copied();
        if budget.is_some_and(|b| need > b) || self.config.max_models == Some(0) {
            return Err(Shortfall::Never);
        }
        let mut used = used_bytes(state, device, Some(id));
        // Other models resident, or loading with room made.
        let mut count = state
            .slots
            .iter()
            .filter(|(other, slot)| {
                other.as_str() != id
                    && !matches!(
                        slot,
                        Slot::Loading {
                            admitted: false,
                            ..
                        }
                    )
            })
            .count();
        let bytes_short = |used: u64| budget.is_some_and(|b| used + need > b);
        let count_short = |count: usize| self.config.max_models.is_some_and(|m| count + 1 > m);
        if !bytes_short(used) && !count_short(count) {
            return Ok(());
        }
        let mut candidates: Vec<(bool, u64, Arc<Resident>)> = state
            .slots
            .values()
            .filter_map(|slot| match slot {
                Slot::Resident(r) if r.spec.id != id && r.users.load(Ordering::Acquire) == 0 => {
                    let pinned = state.pinned.contains(&r.spec.id);
                    (!pinned || self.config.evict_pinned).then(|| {
                        (
                            pinned,
                            r.last_use_seq.load(Ordering::Relaxed),
                            Arc::clone(r),
                        )
                    })
                }
                _ => None,
            })
            .collect();
        // Unpinned before pinned, least recently used first.
        candidates.sort_by_key(|(pinned, last, _)| (*pinned, *last));
        let mut victims = Vec::new();
        for (_, _, r) in candidates {
            if !bytes_short(used) && !count_short(count) {
                break;
            }
            let helps_bytes = bytes_short(used) && r.device == device;
            if helps_bytes || count_short(count) {
                if r.device == device {
                    used -= r.bytes();
                }
                count -= 1;
                victims.push((
                    r,
                    if helps_bytes {
                        EvictReason::Budget
                    } else {
                        EvictReason::Count
                    },
                ));
            }
        }
        if bytes_short(used) || count_short(count) {
            return Err(Shortfall::Blocked);
        }
        for (r, reason) in victims {
            state.slots.remove(&r.spec.id);
            self.evicted(&r, reason);
        }
        Ok(())
    }

    fn evicted(&self, r: &Resident, reason: EvictReason) {
        self.events.emit(ModelEvent::Evicted {
            id: r.spec.id.clone(),
            device: r.device.clone(),
            bytes: r.bytes(),
            reason,
        });
    }

    fn sweep_idle(&self) -> Vec<String> {
        let now = self.now_us();
        let mut state = self.lock();
        let expired: Vec<Arc<Resident>> = state
            .slots
            .values()
            .filter_map(|slot| match slot {
                Slot::Resident(r) if r.users.load(Ordering::Acquire) == 0 => {
                    let ttl = r.spec.idle_ttl_secs?;
                    let idle = now.saturating_sub(r.last_used_us.load(Ordering::Relaxed));
                    (idle >= ttl.saturating_mul(1_000_000)).then(|| Arc::clone(r))
                }
                _ => None,
            })
            .collect();
        for r in &expired {
            state.slots.remove(&r.spec.id);
        }
        if !expired.is_empty() {
            self.released.notify_all();
        }
        drop(state);
        expired
            .iter()
            .map(|r| {
                self.evicted(r, EvictReason::IdleTtl);
                r.spec.id.clone()
            })
            .collect()
    }
}

/// The idle-TTL thread; stops when the manager is dropped.
struct Sweeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    fn start(shared: &Arc<Shared>, interval: Duration) -> Option<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let weak = Arc::downgrade(shared);
        let thread = std::thread::Builder::new()
            .name("mdsa-model-sweeper".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    match weak.upgrade() {
                        Some(shared) => {
                            shared.sweep_idle();
                        }
                        None => break,
                    }
                }
            })
            // Without the thread, TTLs still apply through `sweep_idle`.
            .ok()?;
        Some(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ModelManager {
    fn drop(&mut self) {
        drop(self.sweeper.take());
    }
}
