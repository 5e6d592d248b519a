//! What callers hold: a [`ModelHandle`] keeps its model resident while alive;
//! [`ResidentModel`] is the listing of one.

use std::sync::Arc;
use std::time::Duration;

use mdsa_engine::{Embedder, LoadedEngine, ModelSpec, ServingStats, TextGenerator};

use super::Lease;

/// One resident model, as [`ModelManager::resident`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentModel {
    /// The id.
    pub id: String,
    /// Device label.
    pub device: String,
    /// Why the backend chose that device.
    pub device_reason: String,
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
    /// A batching generator's figures (batched passes, KV bytes held now).
    pub serving: Option<ServingStats>,
}

/// A resident model. Holding it (or a clone) keeps the model in memory.
#[derive(Clone)]
pub struct ModelHandle {
    pub(super) lease: Arc<Lease>,
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

    /// Why the backend chose that device (one readable sentence).
    pub fn device_reason(&self) -> &str {
        &self.lease.resident.device_reason
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
