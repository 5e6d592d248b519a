//! The spec's `options`, parsed once when the model loads.
//!
//! Every mistake a deployment file can make is reported with the model id, the
//! option, what was expected and what was found, so that it is fixed by reading
//! the message.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use mdsa_engine::{spec::ModelRole, spec::ModelSpec};

/// The option keys a spec may use with this backend.
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

/// A spec's options that this backend cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `base_url` is not set.
    #[error(
        "model {spec:?}: option `base_url` is missing; expected the server's OpenAI API root, \
         e.g. \"http://gpu-box:8000/v1\""
    )]
    MissingBaseUrl {
        /// The spec's id.
        spec: String,
    },
    /// An option this backend does not know (a typo, most likely).
    #[error("model {spec:?}: unknown option `{key}`; valid options: {}", OPTIONS.join(", "))]
    UnknownOption {
        /// The spec's id.
        spec: String,
        /// The key found.
        key: String,
    },
    /// An option has a value of the wrong kind.
    #[error("model {spec:?}: option `{option}`: expected {expected}, found {found:?}")]
    Invalid {
        /// The spec's id.
        spec: String,
        /// The option.
        option: &'static str,
        /// What a valid value looks like.
        expected: &'static str,
        /// The value found.
        found: String,
    },
    /// `api_key_env` names an environment variable that is not set.
    #[error(
        "model {spec:?}: option `api_key_env` names the environment variable {var}, which is not set"
    )]
    MissingApiKey {
        /// The spec's id.
        spec: String,
        /// The variable's name.
        var: String,
    },
    /// The spec asks for an encoder; OpenAI servers are used here for generation only.
    #[error(
        "model {spec:?}: the `openai` backend loads generators only; this spec has role encoder"
    )]
    NotAGenerator {
        /// The spec's id.
        spec: String,
    },
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
        let options = Options {
            spec: &spec.id,
            map: &spec.options,
        };
        if let Some(key) = spec.options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            return Err(ConfigError::UnknownOption {
                spec: spec.id.clone(),
                key: key.clone(),
            });
        }
        let base_url = options.base_url()?;
        let api_key = match options.get("api_key_env") {
            None => None,
            Some(var) => match env(var) {
                Some(key) if !key.is_empty() => Some(Secret(key)),
                _ => {
                    return Err(ConfigError::MissingApiKey {
                        spec: spec.id.clone(),
                        var: var.to_string(),
                    });
                }
            },
        };
        let context_length = match options.get("context_length") {
            Some(_) => options.parse("context_length", "a whole number of tokens, at least 2")?,
            None => spec.max_context.unwrap_or(DEFAULT_CONTEXT),
        };
        if context_length < 2 {
            return Err(options.invalid("context_length", "a whole number of tokens, at least 2"));
        }
        Ok(Self {
            spec_id: spec.id.clone(),
            model: spec.source.clone(),
            base_url,
            timeout: options.seconds("timeout_secs", DEFAULT_TIMEOUT)?,
            connect_timeout: options.seconds("connect_timeout_secs", DEFAULT_CONNECT_TIMEOUT)?,
            read_timeout: options.seconds("read_timeout_secs", DEFAULT_READ_TIMEOUT)?,
            retries: match options.get("retries") {
                Some(_) => options.parse("retries", "a whole number, 0 or more")?,
                None => DEFAULT_RETRIES,
            },
            context_length,
            extensions: match options.get("extensions") {
                Some(_) => options.parse("extensions", "true or false")?,
                None => true,
            },
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

/// A spec's options with its id, for error messages.
struct Options<'a> {
    spec: &'a str,
    map: &'a BTreeMap<String, String>,
}

impl Options<'_> {
    fn get(&self, option: &str) -> Option<&str> {
        self.map.get(option).map(|v| v.trim())
    }

    fn invalid(&self, option: &'static str, expected: &'static str) -> ConfigError {
        ConfigError::Invalid {
            spec: self.spec.to_string(),
            option,
            expected,
            found: self.map.get(option).cloned().unwrap_or_default(),
        }
    }

    /// Parses a set option with `FromStr`.
    fn parse<T: std::str::FromStr>(
        &self,
        option: &'static str,
        expected: &'static str,
    ) -> Result<T, ConfigError> {
        self.get(option)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.invalid(option, expected))
    }

    /// A positive number of seconds (`"120"`, `"0.5"`), or `default` when unset.
    fn seconds(&self, option: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        const EXPECTED: &str = "a positive number of seconds, e.g. \"30\" or \"0.5\"";
        if self.get(option).is_none() {
            return Ok(default);
        }
        let secs: f64 = self.parse(option, EXPECTED)?;
        if secs <= 0.0 {
            return Err(self.invalid(option, EXPECTED));
        }
        Duration::try_from_secs_f64(secs).map_err(|_| self.invalid(option, EXPECTED))
    }

    fn base_url(&self) -> Result<String, ConfigError> {
        let url = self
            .get("base_url")
            .ok_or_else(|| ConfigError::MissingBaseUrl {
                spec: self.spec.to_string(),
            })?;
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if let Some(rest) = url.strip_prefix("https://") {
            if !cfg!(feature = "tls") {
                return Err(self.invalid(
                    "base_url",
                    "an http:// URL (https needs mdsa-remote's `tls` feature, off in this build)",
                ));
            }
            rest
        } else {
            return Err(self.invalid("base_url", "an http:// or https:// URL"));
        };
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || rest.contains(char::is_whitespace) {
            return Err(self.invalid(
                "base_url",
                "an http:// or https:// URL with a host, e.g. \"http://gpu-box:8000/v1\"",
            ));
        }
        Ok(url.trim_end_matches('/').to_string())
    }
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
            spec.options.insert(k.to_string(), v.to_string());
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
                "timeout_secs": "120",
                "retries": "2",
            },
        )])"#;
        let registry = mdsa_engine::spec::ModelRegistry::from_ron_str(ron, "test").unwrap();
        let spec = registry.get("big-finance").unwrap();
        let config = RemoteConfig::from_spec_with_env(spec, |_| Some("sk-vllm".into())).unwrap();
        assert_eq!(config.model, "Qwen/Qwen2.5-7B-Instruct");
        assert_eq!(config.timeout, Duration::from_secs(120));
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
            m.contains("\"big-finance\"") && m.contains("`base_url` is missing"),
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
                m.contains("`base_url`") && m.contains(&format!("{bad:?}")),
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
        assert!(m.contains("unknown option `timeout`"), "{m}");
        assert!(
            m.contains("timeout_secs") && m.contains("extensions"),
            "{m}"
        );
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
                m.contains(&format!("option `{option}`: expected")) && m.contains(value),
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
