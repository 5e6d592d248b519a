//! Prefix caching: prompts that start alike (a domain's rendered system
//! prompt, the earlier turns of a conversation, any shared preamble) share the
//! keys and values of their common start, computed once.
//!
//! Nothing has to name the prefix: after each prefill the generator compares
//! the prompt with the last few it ran, and a common start of at least
//! [`MIN_TOKENS`] tokens is copied out of the request's cache and kept. A later
//! prompt that starts with a kept prefix copies it in and runs only the rest.
//! Entries are exact token sequences, so a changed system prompt can never hit
//! a stale entry; [`PrefixCache::clear`] drops them all (a domain reload), and
//! the least recently used go first when the entries outgrow their bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::arch::decoder::KvCache;

/// Shorter common starts are not worth keeping (a chat template's opening
/// tokens are shared by every prompt).
pub const MIN_TOKENS: usize = 16;

/// Recent prompts compared with each new one.
const RECENT: usize = 8;

/// How the prefix cache has done since the model loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixStats {
    /// Prefixes kept now.
    pub entries: usize,
    /// Bytes of keys and values they hold.
    pub bytes: usize,
    /// Prompts that started with a kept prefix.
    pub hits: u64,
    /// Prompts that did not.
    pub misses: u64,
}

/// The kept prefixes of one model.
#[derive(Debug)]
pub(crate) struct PrefixCache {
    state: Mutex<State>,
    limit_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Entry>,
    recent: VecDeque<Vec<u32>>,
    clock: u64,
    hits: u64,
    misses: u64,
}

#[derive(Debug)]
struct Entry {
    kv: Arc<KvCache>,
    last_used: u64,
}

impl PrefixCache {
    /// An empty cache whose entries hold at most `limit_bytes`.
    pub(crate) fn new(limit_bytes: usize) -> Self {
        Self {
            state: Mutex::default(),
            limit_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The longest kept prefix of `prompt` that leaves at least one token of
    /// it to run (the run gives the next token's logits).
    pub(crate) fn lookup(&self, prompt: &[u32]) -> Option<Arc<KvCache>> {
        let mut state = self.lock();
        state.clock += 1;
        let clock = state.clock;
        let best = state
            .entries
            .iter_mut()
            .filter(|e| e.kv.len() < prompt.len() && prompt.starts_with(e.kv.tokens()))
            .max_by_key(|e| e.kv.len());
        let found = best.map(|entry| {
            entry.last_used = clock;
            Arc::clone(&entry.kv)
        });
        match found {
            Some(_) => state.hits += 1,
            None => state.misses += 1,
        }
        found
    }

    /// After `cache` ran `prompt` (of which the first `reused` positions came
    /// from a kept prefix): keeps the longest start `prompt` shares with a
    /// recent prompt, when it is long enough and not kept already.
    pub(crate) fn learn(&self, prompt: &[u32], cache: &KvCache, reused: usize) {
        let shared = {
            let mut state = self.lock();
            let shared = state
                .recent
                .iter()
                .map(|earlier| common_len(earlier, prompt))
                .max()
                .unwrap_or(0)
                // An identical prompt must still leave a token to run.
                .min(prompt.len().saturating_sub(1))
                .min(cache.len());
            if state.recent.len() == RECENT {
                state.recent.pop_front();
            }
            state.recent.push_back(prompt.to_vec());
            let known = state
                .entries
                .iter()
                .any(|e| e.kv.len() == shared && prompt.starts_with(e.kv.tokens()));
            if shared < MIN_TOKENS || shared <= reused || known {
                return;
            }
            shared
        };
        // The copy runs without the lock; another request may keep the same
        // prefix meanwhile, which the second check below catches.
        let kv = Arc::new(cache.prefix(shared));
        if kv.bytes() > self.limit_bytes {
            return;
        }
        let mut state = self.lock();
        if state.entries.iter().any(|e| e.kv.tokens() == kv.tokens()) {
            return;
        }
        state.clock += 1;
        let last_used = state.clock;
        state.entries.push(Entry { kv, last_used });
        while state.entries.iter().map(|e| e.kv.bytes()).sum::<usize>() > self.limit_bytes {
            let oldest = state
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => drop(state.entries.swap_remove(i)),
                None => break,
            }
        }
    }

    /// Drops every kept prefix and the recent prompts.
    pub(crate) fn clear(&self) {
        let mut state = self.lock();
        state.entries.clear();
        state.recent.clear();
    }

    /// Entries, bytes, hits and misses.
    pub(crate) fn stats(&self) -> PrefixStats {
        let state = self.lock();
        PrefixStats {
            entries: state.entries.len(),
            bytes: state.entries.iter().map(|e| e.kv.bytes()).sum(),
            hits: state.hits,
            misses: state.misses,
        }
    }
}

/// How many leading tokens `a` and `b` share.
fn common_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
