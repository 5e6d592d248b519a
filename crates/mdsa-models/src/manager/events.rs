//! What the manager publishes on the bus.

use std::time::Duration;

/// Why a model left memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictReason {
    /// Room for another model within the byte budget.
    Budget,
    /// Room for another model within the model-count limit.
    Count,
    /// Unused for longer than its idle TTL.
    IdleTtl,
}

impl EvictReason {
    /// A short lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Budget => "budget",
            Self::Count => "count",
            Self::IdleTtl => "idle_ttl",
        }
    }
}

/// One thing the manager did, published on the [`mdsa_bus::Bus`] it was given.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelEvent {
    /// A `get` found the model resident.
    Hit {
        /// The model.
        id: String,
    },
    /// A `get` found the model not resident (it starts or joins a load).
    Miss {
        /// The model.
        id: String,
        /// Whether it joined a load another caller had started.
        joined: bool,
    },
    /// A load started.
    LoadStarted {
        /// The model.
        id: String,
        /// The device it is loading onto.
        device: String,
        /// Why the backend chose that device.
        device_reason: String,
        /// Bytes reserved for it before loading (measured earlier, or estimated).
        reserved_bytes: u64,
    },
    /// A load finished and the model is resident.
    Loaded {
        /// The model.
        id: String,
        /// Its device.
        device: String,
        /// Weights as loaded.
        weight_bytes: u64,
        /// KV-cache reservation.
        kv_bytes: u64,
        /// Wall time of the load.
        duration: Duration,
    },
    /// A load failed (the error is handed to every waiter).
    LoadFailed {
        /// The model.
        id: String,
        /// The error, as text.
        error: String,
    },
    /// The manager evicted an idle model.
    Evicted {
        /// The model.
        id: String,
        /// Its device.
        device: String,
        /// Bytes freed.
        bytes: u64,
        /// Why.
        reason: EvictReason,
    },
    /// A model was unloaded on request.
    Unloaded {
        /// The model.
        id: String,
        /// Bytes freed.
        bytes: u64,
    },
}
