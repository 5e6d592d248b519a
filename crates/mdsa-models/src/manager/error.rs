//! The manager's error type.

use std::sync::Arc;
use std::time::Duration;

use mdsa_engine::{ModelError, spec::RegistryError};

/// What can go wrong asking the manager for a model.
///
/// `Clone`, because one failed load is handed to every caller that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManagerError {
    /// No model is registered under this id.
    #[error("no model is registered as {id:?}")]
    UnknownModel {
        /// The id asked for.
        id: String,
    },
    /// The spec names a backend nobody registered.
    #[error(
        "model {id:?} asks for backend {backend:?}, which is not registered (registered: {registered})"
    )]
    UnknownBackend {
        /// The model.
        id: String,
        /// The backend it names.
        backend: String,
        /// The backends there are, comma-separated.
        registered: String,
    },
    /// Loading failed; every caller that waited on the load gets the same error.
    #[error("loading model {id:?}: {source}")]
    Load {
        /// The model.
        id: String,
        /// What the backend said.
        source: Arc<ModelError>,
    },
    /// The model cannot be made resident within the limits, even after evicting
    /// every idle model that may be evicted.
    #[error("{0}")]
    DoesNotFit(Box<NoRoom>),
    /// Waited the configured time for models in use to be released.
    #[error("model {id:?}: no room after waiting {waited:?} for models in use to be released")]
    Timeout {
        /// The model.
        id: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The model is in use (or loading) and cannot be unloaded now.
    #[error("model {id:?} is in use ({users} handles) or loading and cannot be unloaded")]
    InUse {
        /// The model.
        id: String,
        /// Handles alive.
        users: usize,
    },
    /// A registry error (registering a spec at run time).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// The figures of a [`ManagerError::DoesNotFit`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "model {id:?} needs {needed} bytes on {device} but the budget is {}, {resident} bytes are resident and {count} models are resident (limit {}); in use: [{}]",
    budget.map_or("unlimited".to_string(), |b| format!("{b} bytes")),
    max_models.map_or("none".to_string(), |m| m.to_string()),
    in_use.join(", ")
)]
pub struct NoRoom {
    /// The model.
    pub id: String,
    /// The device it would live on.
    pub device: String,
    /// Bytes it needs (measured, or estimated before its first load).
    pub needed: u64,
    /// The device's budget.
    pub budget: Option<u64>,
    /// Bytes resident (and reserved by other loads) on the device.
    pub resident: u64,
    /// Models resident or loading.
    pub count: usize,
    /// The model-count limit.
    pub max_models: Option<usize>,
    /// Models that could not be evicted because they are in use (or loading).
    pub in_use: Vec<String>,
}
