//! How a spec becomes a loaded model: the [`ModelBackend`] extension point, what
//! a backend hands back ([`LoadedModel`]) and what it promises before loading
//! ([`LoadPlan`]).

use std::sync::Arc;

use crate::embed::Embedder;
use crate::error::ModelError;
use crate::generate::TextGenerator;
use crate::source::DownloadProgress;
use crate::spec::ModelSpec;

/// The name specs use for the built-in local backend of `mdsa-models`
/// (`backend: "local"`, the default).
pub const LOCAL_BACKEND: &str = "local";

/// A loaded engine.
#[derive(Clone)]
pub enum LoadedEngine {
    /// A sentence encoder.
    Encoder(Arc<dyn Embedder>),
    /// A text generator.
    Generator(Arc<dyn TextGenerator>),
}

impl std::fmt::Debug for LoadedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Encoder(_) => "Encoder",
            Self::Generator(_) => "Generator",
        })
    }
}

/// What a backend hands the manager: the engine and its measured size.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The engine.
    pub engine: LoadedEngine,
    /// Bytes of weights as held in memory.
    pub weight_bytes: u64,
    /// Bytes reserved for KV caches (0 for encoders and remote models).
    pub kv_bytes: u64,
    /// Device label: `cpu`, `gpu:N`, or something backend-specific (`remote`).
    pub device: String,
}

impl LoadedModel {
    /// Weights plus KV reservation: what counts against the budget.
    pub fn resident_bytes(&self) -> u64 {
        self.weight_bytes + self.kv_bytes
    }
}

/// Where a model will live and roughly how big it will be, known before loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan {
    /// Device label, as in [`LoadedModel::device`].
    pub device: String,
    /// Why that device, in one sentence a person can read (shown by `mdsa
    /// query --json`, `/v1/models` and the load event).
    pub device_reason: String,
    /// Bytes to reserve before the first load; the manager uses the measured
    /// size from then on.
    pub estimated_bytes: u64,
}

/// Loads models for the manager. Implement it in a crate of your own (a remote
/// OpenAI-compatible engine, say) and register it with the model manager
/// (`ModelManager::register_backend` in `mdsa-models`, or the `mdsa` facade's
/// builder); specs choose it by [`name`](ModelBackend::name).
pub trait ModelBackend: Send + Sync {
    /// The name specs refer to in their `backend` field.
    fn name(&self) -> &str;

    /// Makes the model's files local (downloads what is missing), telling
    /// `progress` how each download advances. The manager calls it before
    /// [`plan`](ModelBackend::plan), without any lock held, once per load.
    /// The default has nothing to fetch.
    fn fetch(
        &self,
        spec: &ModelSpec,
        progress: &mut dyn FnMut(DownloadProgress<'_>),
    ) -> Result<(), ModelError> {
        let _ = (spec, progress);
        Ok(())
    }

    /// Device and size estimate, before loading. The default: the CPU, 0 bytes
    /// (nothing is reserved until the model is measured).
    fn plan(&self, spec: &ModelSpec) -> Result<LoadPlan, ModelError> {
        let _ = spec;
        Ok(LoadPlan {
            device: "cpu".into(),
            device_reason: "the backend does not say".into(),
            estimated_bytes: 0,
        })
    }

    /// Loads the model. Called without any manager lock held, once per load.
    fn load(&self, spec: &ModelSpec) -> Result<LoadedModel, ModelError>;
}

/// The manager's label for a device.
pub fn device_label(device: mdsa_hw::Device) -> String {
    match device {
        mdsa_hw::Device::Cpu => "cpu".into(),
        mdsa_hw::Device::Gpu { index } => format!("gpu:{index}"),
    }
}
