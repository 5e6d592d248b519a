//! Where the manager's events go: one [`EventSink::emit`] per thing that happened,
//! counted once here for [`ManagerStats`] and published on the bus, where metrics
//! and anything else that counts observe it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::events::ModelEvent;

/// Counters since the manager was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ManagerStats {
    /// `get` calls that found the model resident.
    pub hits: u64,
    /// `get` calls that did not (each starts a load or joins one);
    /// `hits + misses` is the number of `get` calls for registered models.
    pub misses: u64,
    /// Misses that joined a load another caller had started.
    pub coalesced: u64,
    /// Loads started.
    pub loads: u64,
    /// Loads (or room-making for them) that failed.
    pub failures: u64,
    /// Models evicted (budget, count or idle TTL).
    pub evictions: u64,
    /// Models unloaded on request.
    pub unloads: u64,
}

/// [`ManagerStats`] as atomics, updated from events.
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    loads: AtomicU64,
    failures: AtomicU64,
    evictions: AtomicU64,
    unloads: AtomicU64,
}

impl Counters {
    fn apply(&self, event: &ModelEvent) {
        let bump = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        match event {
            ModelEvent::Hit { .. } => bump(&self.hits),
            ModelEvent::Miss { joined, .. } => {
                bump(&self.misses);
                if *joined {
                    bump(&self.coalesced);
                }
            }
            ModelEvent::LoadStarted { .. } => bump(&self.loads),
            ModelEvent::Downloading { .. } | ModelEvent::Loaded { .. } => {}
            ModelEvent::LoadFailed { .. } => bump(&self.failures),
            ModelEvent::Evicted { .. } => bump(&self.evictions),
            ModelEvent::Unloaded { .. } => bump(&self.unloads),
        }
    }

    fn snapshot(&self) -> ManagerStats {
        let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ManagerStats {
            hits: read(&self.hits),
            misses: read(&self.misses),
            coalesced: read(&self.coalesced),
            loads: read(&self.loads),
            failures: read(&self.failures),
            evictions: read(&self.evictions),
            unloads: read(&self.unloads),
        }
    }
}

/// The one path of the manager's events: its own counters, then the bus.
///
/// The counters are updated in `emit` rather than by a bus observer so that two
/// managers sharing a bus never count each other's events.
pub(super) struct EventSink {
    bus: mdsa_bus::Bus,
    counters: Counters,
}

impl EventSink {
    pub(super) fn new(bus: mdsa_bus::Bus) -> Self {
        Self {
            bus,
            counters: Counters::default(),
        }
    }

    /// Records `event`: counted, then published (observers run before this returns).
    pub(super) fn emit(&self, event: ModelEvent) {
        self.counters.apply(&event);
        // No subscriber is not an error: events are for whoever listens.
        let _ = self.bus.publish(event);
    }

    pub(super) fn stats(&self) -> ManagerStats {
        self.counters.snapshot()
    }
}
