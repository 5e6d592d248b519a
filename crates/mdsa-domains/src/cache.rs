//! Embeddings of domain texts, kept so a router rebuilt after a configuration
//! change embeds only the texts that changed, and (optionally) kept on disk so a
//! process starts without re-embedding every example.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mdsa_engine::Embedder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DomainError, Result};

/// Texts embedded per encoder call.
const BATCH: usize = 32;

type Key = [u8; 32];

/// Hits and misses since the cache was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that needed the encoder.
    pub misses: u64,
    /// Embeddings held.
    pub entries: usize,
}

/// Unit-length embeddings keyed by SHA-256 of (encoder id, text). Shared between
/// routers (`Arc`) and threads.
#[derive(Debug, Default)]
pub struct EmbeddingCache {
    entries: Mutex<HashMap<Key, Arc<[f32]>>>,
    path: Option<PathBuf>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Serialize, Deserialize)]
struct DiskCache {
    /// Hex key -> embedding.
    entries: HashMap<String, Vec<f32>>,
}

impl EmbeddingCache {
    /// An in-memory cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache backed by a JSON file: read now if it exists, written by
    /// [`EmbeddingCache::save`]. A malformed file is an error naming it.
    pub fn persistent(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let mut entries = HashMap::new();
        if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| DomainError::io(&path, e))?;
            let disk: DiskCache = serde_json::from_str(&text).map_err(|e| DomainError::Data {
                path: path.clone(),
                line: e.line(),
                message: format!("not an embedding cache ({e}); delete it to rebuild"),
            })?;
            for (hex, vector) in disk.entries {
                let key = parse_hex(&hex).ok_or_else(|| DomainError::Data {
                    path: path.clone(),
                    line: 1,
                    message: format!("bad key {hex:?}; delete the file to rebuild"),
                })?;
                entries.insert(key, Arc::from(vector));
            }
        }
        Ok(Self {
            entries: Mutex::new(entries),
            path: Some(path),
            ..Self::default()
        })
    }

    /// The backing file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Hit and miss counts.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.lock().len(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<[f32]>>> {
        // A panic elsewhere cannot leave the map half-updated: inserts are single calls.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(encoder_id: &str, text: &str) -> Key {
        let mut hash = Sha256::new();
        hash.update(encoder_id.as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
        hash.finalize().into()
    }

    /// Unit-length embeddings of `texts`, in order, calling the encoder only for
    /// texts not yet cached.
    pub fn embed(
        &self,
        encoder: &dyn Embedder,
        encoder_id: &str,
        texts: &[&str],
    ) -> Result<Vec<Arc<[f32]>>> {
        let keys: Vec<Key> = texts.iter().map(|t| Self::key(encoder_id, t)).collect();
        let mut missing: Vec<usize> = Vec::new();
        {
            let entries = self.lock();
            for (i, key) in keys.iter().enumerate() {
                if !entries.contains_key(key) && !missing.iter().any(|&m| keys[m] == *key) {
                    missing.push(i);
                }
            }
        }
        let hits = texts.len() - missing.len();
        self.hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.misses
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        for chunk in missing.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let vectors = embed_checked(encoder, encoder_id, &batch)?;
            let mut entries = self.lock();
            for (&i, vector) in chunk.iter().zip(vectors) {
                entries.insert(keys[i], vector);
            }
        }
        let entries = self.lock();
        Ok(keys.iter().map(|k| Arc::clone(&entries[k])).collect())
    }

    /// Writes the cache to its file (if it has one), atomically.
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let disk = DiskCache {
            entries: self
                .lock()
                .iter()
                .map(|(k, v)| (to_hex(k), v.to_vec()))
                .collect(),
        };
        let text = serde_json::to_string(&disk).map_err(|e| DomainError::Data {
            path: path.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DomainError::io(dir, e))?;
        }
        // Write-then-rename: a crash mid-write leaves the old file, not half a new one.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| DomainError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| DomainError::io(path, e))
    }
}

/// Embeds texts and checks the encoder kept its contract; returns unit vectors.
pub(crate) fn embed_checked(
    encoder: &dyn Embedder,
    encoder_id: &str,
    texts: &[&str],
) -> Result<Vec<Arc<[f32]>>> {
    let vectors = encoder.embed(texts)?;
    let dimension = encoder.dimension();
    if vectors.len() != texts.len() || vectors.iter().any(|v| v.len() != dimension) {
        return Err(DomainError::Encoder {
            encoder: encoder_id.to_string(),
            message: format!(
                "returned {} vectors for {} texts (expected length {dimension} each)",
                vectors.len(),
                texts.len()
            ),
        });
    }
    Ok(vectors.into_iter().map(|v| Arc::from(unit(v))).collect())
}

/// Scales to unit length (a zero vector stays zero), so cosine is a dot product.
fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn to_hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<Key> {
    let mut key = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}
