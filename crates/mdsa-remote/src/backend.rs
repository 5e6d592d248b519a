//! [`RemoteBackend`]: how the model manager turns an `openai` spec into a generator.

use std::sync::Arc;

use mdsa_engine::{LoadPlan, LoadedEngine, LoadedModel, ModelBackend, ModelError, spec::ModelSpec};

use crate::config::RemoteConfig;
use crate::generator::RemoteGenerator;

/// The name specs select this backend by (`backend: "openai"`).
pub const BACKEND_NAME: &str = "openai";

/// The device label of remote models: nothing of theirs lives on this machine.
pub const REMOTE_DEVICE: &str = "remote";

/// Loads generators served by OpenAI-compatible servers. Register it with the
/// model manager (`ModelManager::register_backend` in `mdsa-models`) or the
/// `mdsa` facade's builder.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteBackend;

impl RemoteBackend {
    /// The backend.
    pub fn new() -> Self {
        Self
    }
}

impl ModelBackend for RemoteBackend {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    /// No local memory to reserve: weights and KV cache are the server's.
    fn plan(&self, _spec: &ModelSpec) -> Result<LoadPlan, ModelError> {
        Ok(LoadPlan {
            device: REMOTE_DEVICE.into(),
            device_reason: "the model runs on the remote server".into(),
            estimated_bytes: 0,
        })
    }

    /// Parses the options and checks, with `GET {base_url}/models`, that the
    /// server answers and serves the model, so that a wrong URL or model name
    /// fails here rather than on the first query.
    fn load(&self, spec: &ModelSpec) -> Result<LoadedModel, ModelError> {
        let config = RemoteConfig::from_spec(spec)?;
        let generator = RemoteGenerator::connect(config)?;
        Ok(LoadedModel {
            engine: LoadedEngine::Generator(Arc::new(generator)),
            weight_bytes: 0,
            kv_bytes: 0,
            device: REMOTE_DEVICE.into(),
        })
    }
}
