//! Getting a model: a hit hands out a handle; a miss starts the single load of
//! that model (or joins one in progress), reserves room, loads without any lock
//! held, and commits the measured model to its slot.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use mdsa_engine::{DownloadProgress, ModelError, ModelSpec};

use super::events::{DOWNLOAD_EVENT_INTERVAL, Download};
use super::{Lease, ManagerError, ModelEvent, ModelHandle, Resident, Shared, Slot};

/// One load, shared by everyone who waits on it: how its download goes, then
/// its outcome.
#[derive(Default)]
pub(super) struct LoadCell {
    state: Mutex<CellState>,
    changed: Condvar,
}

#[derive(Default)]
struct CellState {
    /// The latest download report, numbered so waiters see each one once.
    download: Option<(u64, Download)>,
    result: Option<Result<Arc<Resident>, ManagerError>>,
}

impl LoadCell {
    fn lock(&self) -> MutexGuard<'_, CellState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self, download: Download) {
        let mut state = self.lock();
        let number = state.download.as_ref().map_or(0, |(n, _)| n + 1);
        state.download = Some((number, download));
        self.changed.notify_all();
    }

    fn finish(&self, result: Result<Arc<Resident>, ManagerError>) {
        self.lock().result = Some(result);
        self.changed.notify_all();
    }

    /// Waits for the outcome, handing `on_download` each report made meanwhile.
    fn wait(&self, on_download: &mut dyn FnMut(&Download)) -> Result<Arc<Resident>, ManagerError> {
        let mut seen = None;
        let mut state = self.lock();
        loop {
            // The latest report first: every waiter hears the last one (a
            // file's `done`) even when the load finished meanwhile.
            if let Some((number, download)) = &state.download
                && seen != Some(*number)
            {
                seen = Some(*number);
                let download = download.clone();
                // The loader must not wait on a slow waiter's callback.
                drop(state);
                on_download(&download);
                state = self.lock();
                continue;
            }
            if let Some(result) = state.result.as_ref() {
                return result.clone();
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Thins a download's progress to what is worth an event: a file's first
/// report, its last, and one per [`DOWNLOAD_EVENT_INTERVAL`] in between.
#[derive(Default)]
struct DownloadThrottle {
    last: Option<(String, Instant)>,
}

impl DownloadThrottle {
    fn pass(&mut self, progress: &DownloadProgress<'_>) -> bool {
        let now = Instant::now();
        let due = match &self.last {
            Some((file, at)) => {
                file != progress.file || now.duration_since(*at) >= DOWNLOAD_EVENT_INTERVAL
            }
            None => true,
        };
        if due || progress.done {
            self.last = Some((progress.file.to_owned(), now));
        }
        due || progress.done
    }
}

impl Shared {
    pub(super) fn handle(self: &Arc<Self>, resident: Arc<Resident>) -> ModelHandle {
        ModelHandle {
            lease: Arc::new(Lease {
                resident,
                shared: Arc::downgrade(self),
            }),
        }
    }

    pub(super) fn get(
        self: &Arc<Self>,
        id: &str,
        on_download: &mut dyn FnMut(&Download),
    ) -> Result<ModelHandle, ManagerError> {
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
                return cell.wait(on_download).map(|r| self.handle(r));
            }
            None => {}
        }
        // Only a load needs the spec (a clone of its strings): a hit, every
        // routed request's lookup, does not. A slot's model is registered;
        // the registry is read under the state lock, never the other way round.
        let spec = self.spec(id)?;
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
        let result = self.load_into_slot(&spec, &cell, on_download);
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
    fn load_into_slot(
        self: &Arc<Self>,
        spec: &ModelSpec,
        cell: &LoadCell,
        on_download: &mut dyn FnMut(&Download),
    ) -> Result<Arc<Resident>, ManagerError> {
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
        let mut throttle = DownloadThrottle::default();
        backend
            .fetch(spec, &mut |progress| {
                if !throttle.pass(&progress) {
                    return;
                }
                let download = Download {
                    file: progress.file.to_owned(),
                    downloaded: progress.downloaded,
                    total: progress.total,
                    done: progress.done,
                };
                on_download(&download);
                cell.report(download.clone());
                self.events.emit(ModelEvent::Downloading {
                    id: id.into(),
                    download,
                });
            })
            .map_err(load_error)?;
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
            device_reason: plan.device_reason.clone(),
            reserved_bytes: reserve,
        });

        let started = Instant::now();
        // A panicking backend must not leave waiters blocked on a load that
        // will never finish.
        let loaded = std::panic::catch_unwind(AssertUnwindSafe(|| backend.load(spec)))
            .unwrap_or_else(|payload| {
                // The panic's message, when it has one, says what went wrong.
                let said = crate::panic_message(payload.as_ref())
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
            device_reason: plan.device_reason,
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
}
