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

/// How often a flowing download is reported: often enough for a progress bar,
/// rarely enough that a fast link does not flood the bus.
pub const DOWNLOAD_EVENT_INTERVAL: Duration = Duration::from_millis(200);

/// How far one file of a model's download has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The file within the repo.
    pub file: String,
    /// Bytes on disk so far (including a resumed prefix).
    pub downloaded: u64,
    /// The file's size as the Hub reports it.
    pub total: u64,
    /// Whether the file is complete and verified.
    pub done: bool,
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
    /// A file of the model is being downloaded (before the load starts); sent
    /// when a file starts, at most every [`DOWNLOAD_EVENT_INTERVAL`] while it
    /// flows, and when it is complete and verified.
    Downloading {
        /// The model.
        id: String,
        /// How far the file has come.
        download: Download,
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
