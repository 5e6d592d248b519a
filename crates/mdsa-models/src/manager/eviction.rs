//! Making room: least recently used idle models leave first, pinned ones last
//! (and only when allowed), never one in use; waiting for releases when
//! configured; and the idle-TTL sweeper thread.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{EvictReason, ManagerError, ModelEvent, NoRoom, Resident, Shared, Slot, State};

/// Bytes resident or reserved on `device`, leaving out `except`'s own slot.
pub(super) fn used_bytes(state: &State, device: &str, except: Option<&str>) -> u64 {
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
    /// Evicts idle models until `need` more bytes fit on `device` and one more
    /// model fits the count, waiting for releases if configured.
    pub(super) fn make_room<'a>(
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

    pub(super) fn sweep_idle(&self) -> Vec<String> {
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
pub(super) struct Sweeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    pub(super) fn start(shared: &Arc<Shared>, interval: Duration) -> Option<Self> {
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
