//! The KV caches of one generator, allocated once and reused: a request takes
//! an idle cache (or makes the first ones) and gives it back when it ends.
//!
//! Allocating a whole context's cache per request cost more than a short
//! prompt's prefill: once the allocator serves buffers that large from its
//! heap, every allocation is zero-filled anew (~80 ms for SmolLM2's 8,192
//! positions on this kind of machine).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::arch::decoder::{Decoder, KvCache};

/// A generator's idle caches, each of `capacity` positions: at most as many
/// as its scheduler runs sequences (the KV reservation counts that many).
#[derive(Debug)]
pub(crate) struct CachePool {
    idle: Mutex<Vec<KvCache>>,
    capacity: usize,
    most: usize,
    /// Caches that exist now, idle or in use.
    alive: AtomicUsize,
}

impl CachePool {
    /// An empty pool keeping up to `most` idle caches of `capacity` positions.
    pub(crate) fn new(capacity: usize, most: usize) -> Self {
        Self {
            idle: Mutex::default(),
            capacity,
            most,
            alive: AtomicUsize::new(0),
        }
    }

    /// Caches that exist now (idle or in use), each of the pool's capacity.
    pub(crate) fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// Positions each cache holds room for.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// An empty cache of the pool's capacity, idle or new.
    pub(crate) fn take(&self, model: &dyn Decoder) -> KvCache {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        idle.unwrap_or_else(|| {
            self.alive.fetch_add(1, Ordering::Relaxed);
            model.new_cache_with_capacity(self.capacity)
        })
    }

    /// Keeps `cache` for a later request (emptied), unless enough are idle.
    pub(crate) fn give_back(&self, mut cache: KvCache) {
        cache.clear();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.most {
            idle.push(cache);
        } else {
            self.alive.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
