//! The KV caches of one generator, allocated once and reused: a request takes
//! an idle cache (or makes the first ones) and gives it back when it ends.
//!
//! Allocating a whole context's cache per request cost more than a short
//! prompt's prefill: once the allocator serves buffers that large from its
//! heap, every allocation is zero-filled anew (~80 ms for SmolLM2's 8,192
//! positions on this kind of machine).

use std::sync::{Mutex, PoisonError};

use crate::arch::decoder::{Decoder, KvCache};

/// A generator's idle caches, each of `capacity` positions: at most as many
/// as its scheduler runs sequences (the KV reservation counts that many).
#[derive(Debug)]
pub(crate) struct CachePool {
    idle: Mutex<Vec<KvCache>>,
    capacity: usize,
    most: usize,
}

impl CachePool {
    /// An empty pool keeping up to `most` idle caches of `capacity` positions.
    pub(crate) fn new(capacity: usize, most: usize) -> Self {
        Self {
            idle: Mutex::default(),
            capacity,
            most,
        }
    }

    /// An empty cache of the pool's capacity, idle or new.
    pub(crate) fn take(&self, model: &dyn Decoder) -> KvCache {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        idle.unwrap_or_else(|| model.new_cache_with_capacity(self.capacity))
    }

    /// Keeps `cache` for a later request (emptied), unless enough are idle.
    pub(crate) fn give_back(&self, mut cache: KvCache) {
        cache.clear();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.most {
            idle.push(cache);
        }
    }
}
