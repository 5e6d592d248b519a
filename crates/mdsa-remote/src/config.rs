//! The spec's `options`, parsed once when the model loads.
//!
//! The options are read into a serde struct ([`ModelSpec::options`]), so a
//! deployment file may write them as plain values (`"timeout_secs": 120`) or,
//! as older files do, as strings (`"timeout_secs": "120"`). Every mistake is
//! reported with the file and line (when the spec came from one), the option's
//! field path, the model id, what was expected and what was found, so that it
//! is fixed by reading the message.

use std::fmt;
use std::time::Duration;

use mdsa_engine::{spec::ModelRole, spec::ModelSpec};

/// The option keys a spec may use with this backend (any other is rejected
/// with this list).
pub const OPTIONS: &[&str] = &[
    "base_url",
    "api_key_env",
    "timeout_secs",
    "connect_timeout_secs",
    "read_timeout_secs",
    "retries",
    "context_length",
    "extensions",
];

/// Whole-request limit when `timeout_secs` is not set: long enough for a long
/// answer at a slow decode rate, short enough that a hung server is noticed.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Connection set-up limit when `connect_timeout_secs` is not set.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence between streamed chunks when `read_timeout_secs` is not set.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Retries of a transient failure when `retries` is not set.
const DEFAULT_RETRIES: u32 = 2;
/// Context length when neither `context_length` nor the spec's `max_context` is set.
const DEFAULT_CONTEXT: usize = 4096;

/// How to reach the server and talk to it, checked.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The spec's id, to name the model in messages.
    pub spec_id: String,
    /// The model name sent to the server (the spec's `source`).
    pub model: String,
    /// The API root, without a trailing `/` (`http://gpu-box:8000/v1`).
    pub base_url: String,
    /// Limit on one whole request, streaming included (`timeout_secs`).
    pub timeout: Duration,
    /// Limit on opening the connection (`connect_timeout_secs`).
    pub connect_timeout: Duration,
    /// Longest wait for any bytes, between streamed chunks too (`read_timeout_secs`).
    pub read_timeout: Duration,
    /// How many times a transient failure is retried (`retries`).
    pub retries: u32,
    /// Longest prompt plus answer, in tokens (`context_length`).
    pub context_length: usize,
    /// Whether `top_k` and `repetition_penalty` are sent (`extensions`).
    pub extensions: bool,
    // Private so the key can only come from the environment, and wrapped so that
    // `{:?}` of a config never prints it.
    api_key: Option<Secret>,
}

/// A bearer key; its `Debug` output hides the value.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A spec that this backend cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An option is missing, unknown (a typo, most likely), or has a value
    /// of the wrong kind. The message names the file and line (when the spec
    /// came from one), the option's field path, the model, what was expected
    /// and what was found; an unknown option's lists the valid ones.
    #[error(transparent)]
    Options(#[from] mdsa_engine::ConfigError),
    /// The spec asks for an encoder; OpenAI servers are used here for generation only.
    #[error(
        "model {spec:?}: the `openai` backend loads generators only; this spec has role encoder"
    )]
    NotAGenerator {
        /// The spec's id.
        spec: String,
    },
}

/// The options as written, before the checks serde's types do not make.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteOptions {
    base_url: Option<String>,
    api_key_env: Option<String>,
    timeout_secs: Option<f64>,
    connect_timeout_secs: Option<f64>,
    read_timeout_secs: Option<f64>,
    retries: Option<u32>,
    context_length: Option<usize>,
    extensions: Option<bool>,
}

impl RemoteConfig {
    /// Parses a spec's options, reading the API key (if `api_key_env` is set)
    /// from the process environment.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, ConfigError> {
        Self::from_spec_with_env(spec, |var| std::env::var(var).ok())
    }

    /// Like [`from_spec`](Self::from_spec), with `env` looking up environment
    /// variables: for tests, or for a program that keeps its secrets elsewhere.
    pub fn from_spec_with_env(
        spec: &ModelSpec,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        if spec.role != ModelRole::Generator {
            return Err(ConfigError::NotAGenerator {
                spec: spec.id.clone(),
            });
        }
        let options: RemoteOptions = spec.options()?;
        let base_url = base_url(spec, options.base_url.as_deref())?;
        let api_key = match &options.api_key_env {
            None => None,
            Some(var) => match env(var) {
                Some(key) if !key.is_empty() => Some(Secret(key)),
                _ => {
                    return Err(spec
                        .option_error(
                            "api_key_env",
                            format!("names the environment variable {var}, which is not set"),
                        )
                        .into());
                }
            },
        };
        let context_length = options
            .context_length
            .or(spec.max_context)
            .unwrap_or(DEFAULT_CONTEXT);
        if context_length < 2 {
            return Err(invalid(
                spec,
                "context_length",
                "a whole number of tokens, at least 2",
            ));
        }
        Ok(Self {
            spec_id: spec.id.clone(),
            model: spec.source.clone(),
            base_url,
            timeout: seconds(spec, "timeout_secs", options.timeout_secs, DEFAULT_TIMEOUT)?,
            connect_timeout: seconds(
                spec,
                "connect_timeout_secs",
                options.connect_timeout_secs,
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            read_timeout: seconds(
                spec,
                "read_timeout_secs",
                options.read_timeout_secs,
                DEFAULT_READ_TIMEOUT,
            )?,
            retries: options.retries.unwrap_or(DEFAULT_RETRIES),
            context_length,
            extensions: options.extensions.unwrap_or(true),
            api_key,
        })
    }

    /// `Authorization` header value, when a key is configured.
    pub(crate) fn bearer(&self) -> Option<String> {
        self.api_key.as_ref().map(|key| format!("Bearer {}", key.0))
    }

    /// `{base_url}/{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url)
    }
}

/// `option` parsed but is out of range: "expected ..., found ...".
fn invalid(spec: &ModelSpec, option: &str, expected: &str) -> ConfigError {
    let found = spec
        .options
        .get(option)
        .map(|v| v.to_string())
        .unwrap_or_default();
    spec.option_error(option, format!("expected {expected}, found {found}"))
        .into()
}

/// A positive number of seconds (`120`, `0.5`), or `default` when unset.
fn seconds(
    spec: &ModelSpec,
    option: &str,
    value: Option<f64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    const EXPECTED: &str = "a positive number of seconds, e.g. 30 or 0.5";
    let Some(secs) = value else {
        return Ok(default);
    };
    if secs <= 0.0 {
        return Err(invalid(spec, option, EXPECTED));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| invalid(spec, option, EXPECTED))
}

fn base_url(spec: &ModelSpec, url: Option<&str>) -> Result<String, ConfigError> {
    let url = url.map(str::trim).ok_or_else(|| {
        spec.option_error(
            "base_url",
            "missing; expected the server's OpenAI API root, e.g. \"http://gpu-box:8000/v1\"",
        )
    })?;
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if let Some(rest) = url.strip_prefix("https://") {
        if !cfg!(feature = "tls") {
            return Err(invalid(
                spec,
                "base_url",
                "an http:// URL (https needs mdsa-remote's `tls` feature, off in this build)",
            ));
        }
        rest
    } else {
        return Err(invalid(spec, "base_url", "an http:// or https:// URL"));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains(char::is_whitespace) {
        return Err(invalid(
            spec,
            "base_url",
            "an http:// or https:// URL with a host, e.g. \"http://gpu-box:8000/v1\"",
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(options: &[(&str, &str)]) -> ModelSpec {
        let mut spec = ModelSpec::new(
            "big-finance",
            "Qwen/Qwen2.5-7B-Instruct",
            ModelRole::Generator,
        );
        spec.backend = "openai".into();
        for (k, v) in options {
            spec.options.insert(*k, *v);
        }
        spec
    }

    fn parse(options: &[(&str, &str)]) -> Result<RemoteConfig, ConfigError> {
        RemoteConfig::from_spec_with_env(&spec(options), |var| {
            (var == "TEST_KEY").then(|| "sk-test".to_string())
        })
    }

    fn message(options: &[(&str, &str)]) -> String {
        parse(options).expect_err("should be rejected").to_string()
    }

    #[test]
    fn defaults_fill_what_is_not_set() {
        let config = parse(&[("base_url", "http://gpu-box:8000/v1/")]).unwrap();
        assert_eq!(config.base_url, "http://gpu-box:8000/v1");
        assert_eq!(config.url("models"), "http://gpu-box:8000/v1/models");
        assert_eq!(config.model, "Qwen/Qwen2.5-7B-Instruct");
        assert_eq!(config.retries, 2);
        assert_eq!(config.context_length, 4096);
        assert!(config.extensions);
        assert_eq!(config.bearer(), None);
    }

    #[test]
    fn every_option_is_read() {
        let config = parse(&[
            ("base_url", "http://api.example.com/v1"),
            ("api_key_env", "TEST_KEY"),
            ("timeout_secs", "120"),
            ("connect_timeout_secs", "2.5"),
            ("read_timeout_secs", "30"),
            ("retries", "0"),
            ("context_length", "32768"),
            ("extensions", "false"),
        ])
        .unwrap();
        assert_eq!(config.timeout, Duration::from_secs(120));
        assert_eq!(config.connect_timeout, Duration::from_millis(2500));
        assert_eq!(config.read_timeout, Duration::from_secs(30));
        assert_eq!(config.retries, 0);
        assert_eq!(config.context_length, 32768);
        assert!(!config.extensions);
        assert_eq!(config.bearer().as_deref(), Some("Bearer sk-test"));
        assert!(
            !format!("{config:?}").contains("sk-test"),
            "Debug must hide the key"
        );
    }

    #[test]
    fn the_documented_registry_entry_parses() {
        let ron = r#"(models: [(
            id: "big-finance",
            source: "Qwen/Qwen2.5-7B-Instruct",
            role: generator,
            backend: "openai",
            options: {
                "base_url": "http://gpu-box:8000/v1",
                "api_key_env": "VLLM_API_KEY",
                "timeout_secs": 120,
                "connect_timeout_secs": 2.5,
                "retries": "2",
                "extensions": false,
            },
        )])"#;
        let registry = mdsa_engine::spec::ModelRegistry::from_ron_str(ron, "test").unwrap();
        let spec = registry.get("big-finance").unwrap();
        let config = RemoteConfig::from_spec_with_env(spec, |_| Some("sk-vllm".into())).unwrap();
        assert_eq!(config.model, "Qwen/Qwen2.5-7B-Instruct");
        assert_eq!(config.timeout, Duration::from_secs(120));
        assert_eq!(config.connect_timeout, Duration::from_millis(2500));
        assert_eq!(config.retries, 2);
        assert!(!config.extensions);
    }

    #[test]
    fn errors_in_a_file_name_its_line_and_the_field_path() {
        let ron = r#"(models: [(
            id: "big-finance",
            source: "Qwen/Qwen2.5-7B-Instruct",
            role: generator,
            backend: "openai",
            options: {
                "base_url": "http://gpu-box:8000/v1",
                "timeout_secs": 0,
            },
        )])"#;
        let registry = mdsa_engine::spec::ModelRegistry::from_ron_str(ron, "models.ron").unwrap();
        let spec = registry.get("big-finance").unwrap();
        let m = RemoteConfig::from_spec_with_env(spec, |_| None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            m,
            "models.ron:8:17: models[0].options.timeout_secs: model \"big-finance\": \
             expected a positive number of seconds, e.g. 30 or 0.5, found 0"
        );
    }

    #[test]
    fn context_defaults_to_the_specs_max_context() {
        let mut spec = spec(&[("base_url", "http://localhost:8000/v1")]);
        spec.max_context = Some(8192);
        let config = RemoteConfig::from_spec_with_env(&spec, |_| None).unwrap();
        assert_eq!(config.context_length, 8192);
    }

    #[test]
    fn missing_base_url_names_the_model_and_the_option() {
        let m = message(&[]);
        assert!(
            m.contains("options.base_url: model \"big-finance\": missing; expected"),
            "{m}"
        );
    }

    #[test]
    fn base_url_must_be_http_with_a_host() {
        for bad in [
            "gpu-box:8000/v1",
            "ftp://gpu-box/v1",
            "http://",
            "http:///v1",
            "http://a b/v1",
        ] {
            let m = message(&[("base_url", bad)]);
            assert!(
                m.contains("options.base_url: model \"big-finance\": expected")
                    && m.contains(&format!("found {bad:?}")),
                "{m}"
            );
        }
    }

    #[test]
    fn https_needs_the_tls_feature() {
        let result = parse(&[("base_url", "https://api.example.com/v1")]);
        if cfg!(feature = "tls") {
            assert_eq!(result.unwrap().base_url, "https://api.example.com/v1");
        } else {
            let m = result.unwrap_err().to_string();
            assert!(m.contains("`tls` feature"), "{m}");
        }
    }

    #[test]
    fn unknown_option_lists_the_valid_ones() {
        let m = message(&[("base_url", "http://localhost/v1"), ("timeout", "5")]);
        assert!(
            m.contains("options.timeout: model \"big-finance\": unknown field `timeout`"),
            "{m}"
        );
        for valid in OPTIONS {
            assert!(m.contains(&format!("`{valid}`")), "{m}");
        }
    }

    #[test]
    fn numbers_are_checked() {
        for (option, value) in [
            ("timeout_secs", "two"),
            ("timeout_secs", "0"),
            ("read_timeout_secs", "-1"),
            ("connect_timeout_secs", "inf"),
            ("retries", "-1"),
            ("context_length", "1"),
            ("extensions", "yes"),
        ] {
            let m = message(&[("base_url", "http://localhost/v1"), (option, value)]);
            assert!(
                m.contains(&format!(
                    "options.{option}: model \"big-finance\": expected"
                )) && m.contains(value),
                "{m}"
            );
        }
    }

    #[test]
    fn an_unset_key_variable_is_an_error() {
        let m = message(&[("base_url", "http://localhost/v1"), ("api_key_env", "NOPE")]);
        assert!(m.contains("NOPE") && m.contains("not set"), "{m}");
    }
}
