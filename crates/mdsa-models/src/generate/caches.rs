//! The KV caches of one generator, allocated once and reused: a request takes
//! an idle cache (or makes the first ones) and gives it back when it ends.
//!
//! Allocating a whole context's cache per request cost more than a short
//! prompt's prefill: once the allocator serves buffers that large from its
//! heap, every allocation is zero-filled anew (~80 ms for SmolLM2's 8,192
//! positions on this kind of machine).

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};

use crate::arch::decoder::{Decoder, KvCache};

/// Idle caches kept at most: the requests one model runs at once on a
/// small machine. More concurrent requests make their own and drop them.
const IDLE: usize = 4;

/// A generator's idle caches, each of `capacity` positions.
#[derive(Debug)]
pub(crate) struct CachePool {
    idle: Mutex<Vec<KvCache>>,
    capacity: usize,
}

impl CachePool {
    /// An empty pool of caches of `capacity` positions.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            idle: Mutex::default(),
            capacity,
        }
    }

    /// An empty cache of the pool's capacity, idle or new; it goes back to
    /// the pool when dropped.
    pub(crate) fn take<'a>(&'a self, model: &dyn Decoder) -> PooledCache<'a> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let cache = idle.unwrap_or_else(|| model.new_cache_with_capacity(self.capacity));
        PooledCache {
            cache: Some(cache),
            pool: self,
        }
    }

    fn give_back(&self, mut cache: KvCache) {
        cache.clear();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE {
            idle.push(cache);
        }
    }
}

/// A cache on loan from a [`CachePool`].
#[derive(Debug)]
pub(crate) struct PooledCache<'a> {
    cache: Option<KvCache>,
    pool: &'a CachePool,
}

impl Deref for PooledCache<'_> {
    type Target = KvCache;

    fn deref(&self) -> &KvCache {
        // Only `drop` takes it out.
        self.cache.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for PooledCache<'_> {
    fn deref_mut(&mut self) -> &mut KvCache {
        self.cache.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for PooledCache<'_> {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            self.pool.give_back(cache);
        }
    }
}
