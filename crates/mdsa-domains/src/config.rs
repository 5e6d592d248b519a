//! Domain configuration: what a domain is, how it is routed to and how its answers
//! are generated and checked, and the RON file that holds a set of them.

use std::time::Duration;

use mdsa_engine::{GenerationParams, SamplingParams};
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Result};

/// The default prompt template: the query on its own.
pub const DEFAULT_TEMPLATE: &str = "{query}";

/// The label used for "no domain" in data files, reports and ids (reserved).
pub const NONE_LABEL: &str = "none";

/// One domain: identity, routing evidence, and how to answer in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// Stable identifier (`[a-z0-9_-]+`), used in data files, the CLI and decisions.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// What belongs in the domain; embedded and used as routing evidence.
    #[serde(default)]
    pub description: String,
    /// Words and phrases that count as evidence for the domain (whole words,
    /// case-insensitive, a trailing `s`/`es` on the query's word also matches).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Example queries; a query is scored by its nearest examples.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Model reference that answers this domain; `None` uses the file's
    /// `default_model` (or the caller's default generator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// System message sent before the query.
    #[serde(default)]
    pub system_prompt: String,
    /// User message; `{query}` is replaced by the query.
    #[serde(default = "default_template")]
    pub prompt_template: String,
    /// Token limit and sampling.
    #[serde(default)]
    pub generation: GenerationSettings,
    /// Checks an answer must pass.
    #[serde(default)]
    pub validation: ValidationRules,
    /// Time allowed for the whole execution (every attempt), in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: f64,
    /// What to do when an answer fails validation.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// This domain's own `min_score`, used instead of the router's when it is
    /// the best domain (`mdsa routes fit --per-domain` sets it where a domain's
    /// scores sit apart from the others').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
}

fn default_template() -> String {
    DEFAULT_TEMPLATE.to_string()
}

fn default_timeout_secs() -> f64 {
    60.0
}

impl DomainConfig {
    /// A domain with an id and a description; add evidence with the builder methods:
    ///
    /// ```
    /// use mdsa_domains::DomainConfig;
    /// let legal = DomainConfig::new("legal", "Contracts, tenancy, employment law and disputes")
    ///     .keywords(["contract", "lawsuit", "tenant", "lawyer"])
    ///     .examples(["Can my landlord keep my deposit?", "Is a verbal contract binding?"]);
    /// assert!(legal.validate().is_ok());
    /// ```
    pub fn new(id: impl Into<String>, description: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            name: id.clone(),
            id,
            description: description.into(),
            keywords: Vec::new(),
            examples: Vec::new(),
            model: None,
            system_prompt: String::new(),
            prompt_template: default_template(),
            generation: GenerationSettings::default(),
            validation: ValidationRules::default(),
            timeout_secs: default_timeout_secs(),
            retry: RetryPolicy::default(),
            min_score: None,
        }
    }

    /// Sets the human-readable name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the keywords.
    pub fn keywords<S: Into<String>>(mut self, keywords: impl IntoIterator<Item = S>) -> Self {
        self.keywords = keywords.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the example queries.
    pub fn examples<S: Into<String>>(mut self, examples: impl IntoIterator<Item = S>) -> Self {
        self.examples = examples.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the model reference.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the system prompt.
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.system_prompt = prompt.into();
        self
    }

    /// Sets the prompt template (must contain `{query}`).
    pub fn prompt_template(mut self, template: impl Into<String>) -> Self {
        self.prompt_template = template.into();
        self
    }

    /// Sets the generation settings.
    pub fn generation(mut self, generation: GenerationSettings) -> Self {
        self.generation = generation;
        self
    }

    /// Sets the validation rules.
    pub fn validation(mut self, rules: ValidationRules) -> Self {
        self.validation = rules;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_secs = timeout.as_secs_f64();
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// A copy of the settings that answer in this domain, without the routing
    /// evidence (description, keywords, examples): what executing a request
    /// reads, for a per-request variant of the domain at a fraction of a
    /// whole copy's cost.
    pub fn execution_settings(&self) -> Self {
        Self {
            id: self.id.clone(),
            name: self.name.clone(),
            description: String::new(),
            keywords: Vec::new(),
            examples: Vec::new(),
            model: self.model.clone(),
            system_prompt: self.system_prompt.clone(),
            prompt_template: self.prompt_template.clone(),
            generation: self.generation.clone(),
            validation: self.validation.clone(),
            timeout_secs: self.timeout_secs,
            retry: self.retry.clone(),
            min_score: self.min_score,
        }
    }

    /// The timeout as a duration.
    pub fn timeout_duration(&self) -> Duration {
        Duration::try_from_secs_f64(self.timeout_secs).unwrap_or(Duration::MAX)
    }

    /// Checks every value; the error names the field (relative to the domain).
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|(field, message)| {
            DomainError::Config(mdsa_config::ConfigError {
                origin: format!("domain {:?}", self.id),
                line: None,
                column: None,
                field,
                message,
            })
        })
    }

    /// The first problem as (field path relative to the domain, message).
    fn check(&self) -> Result<(), (String, String)> {
        let err = |field: &str, message: String| Err((field.to_string(), message));
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return err(
                "id",
                format!(
                    "must be non-empty lowercase letters, digits, '-' or '_', found {:?}",
                    self.id
                ),
            );
        }
        if self.id == NONE_LABEL {
            return err(
                "id",
                format!("{NONE_LABEL:?} is reserved for \"no domain\""),
            );
        }
        if self.name.trim().is_empty() {
            return err("name", "must not be empty".into());
        }
        if self.examples.is_empty() {
            return err(
                "examples",
                "needs at least one example query (the router scores queries by their nearest examples)"
                    .into(),
            );
        }
        for (field, list) in [("examples", &self.examples), ("keywords", &self.keywords)] {
            if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
                return err(&format!("{field}[{i}]"), "must not be empty".into());
            }
        }
        if !self.prompt_template.contains("{query}") {
            return err(
                "prompt_template",
                format!("must contain {{query}}, found {:?}", self.prompt_template),
            );
        }
        if let Some(min_score) = self.min_score
            && !min_score.is_finite()
        {
            return err("min_score", format!("must be a number, found {min_score}"));
        }
        if !(self.timeout_secs > 0.0 && self.timeout_secs.is_finite()) {
            return err(
                "timeout_secs",
                format!("must be > 0, found {}", self.timeout_secs),
            );
        }
        self.generation
            .check()
            .map_err(|(f, m)| (format!("generation.{f}"), m))?;
        self.validation
            .check()
            .map_err(|(f, m)| (format!("validation.{f}"), m))?;
        self.retry
            .check()
            .map_err(|(f, m)| (format!("retry.{f}"), m))?;
        Ok(())
    }
}

/// Token limit and sampling for a domain's answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationSettings {
    /// Most tokens to generate (> 0).
    pub max_tokens: usize,
    /// 0 is greedy; higher is more random (>= 0).
    pub temperature: f32,
    /// Nucleus sampling mass, in (0, 1].
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Penalty on recently generated tokens (1 = none, > 0).
    pub repetition_penalty: f32,
    /// Strings that end the answer.
    pub stop: Vec<String>,
    /// Seed for reproducible sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: 1.1,
            stop: Vec::new(),
            seed: None,
        }
    }
}

impl GenerationSettings {
    /// The generator's parameters for these settings.
    pub fn to_params(&self) -> GenerationParams {
        GenerationParams {
            max_tokens: self.max_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                repetition_penalty: self.repetition_penalty,
                seed: self.seed,
                ..SamplingParams::default()
            },
            stop: self.stop.clone(),
            // A prompt too long for the model is an error, not a silently dropped
            // system prompt.
            truncate_prompt: false,
        }
    }

    fn check(&self) -> Result<(), (String, String)> {
        if self.max_tokens == 0 {
            return Err(("max_tokens".into(), "must be > 0, found 0".into()));
        }
        // The sampler's own range checks; their messages start with the field name.
        self.to_params().sampling.validate().map_err(|message| {
            let field = message.split_whitespace().next().unwrap_or("sampling");
            (field.to_string(), message.clone())
        })?;
        if let Some(i) = self.stop.iter().position(String::is_empty) {
            return Err((format!("stop[{i}]"), "must not be empty".into()));
        }
        Ok(())
    }
}

/// Checks an answer must pass (see [`crate::validate::ResponseValidator`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationRules {
    /// Fewest characters (after trimming); an empty answer always fails.
    pub min_chars: usize,
    /// Most characters (0 = no limit).
    pub max_chars: usize,
    /// Length of the word n-grams counted for repetition loops (>= 1).
    pub repetition_ngram: usize,
    /// An n-gram seen this many times or more is a repetition loop (>= 2; 0 turns
    /// the check off).
    pub max_repeats: usize,
    /// Whether an answer cut off by the token limit fails.
    pub reject_truncated: bool,
    /// Regular expressions (case-insensitive) an answer must not match.
    pub banned_patterns: Vec<String>,
}

impl Default for ValidationRules {
    fn default() -> Self {
        Self {
            min_chars: 1,
            max_chars: 0,
            repetition_ngram: 4,
            max_repeats: 4,
            reject_truncated: false,
            banned_patterns: Vec::new(),
        }
    }
}

impl ValidationRules {
    fn check(&self) -> Result<(), (String, String)> {
        if self.max_chars != 0 && self.max_chars < self.min_chars {
            return Err((
                "max_chars".into(),
                format!(
                    "must be 0 (no limit) or >= min_chars ({}), found {}",
                    self.min_chars, self.max_chars
                ),
            ));
        }
        if self.repetition_ngram == 0 {
            return Err(("repetition_ngram".into(), "must be >= 1, found 0".into()));
        }
        if self.max_repeats == 1 {
            return Err((
                "max_repeats".into(),
                "must be 0 (off) or >= 2, found 1".into(),
            ));
        }
        for (i, pattern) in self.banned_patterns.iter().enumerate() {
            if let Err(e) = crate::validate::compile_pattern(pattern) {
                return Err((format!("banned_patterns[{i}]"), e));
            }
        }
        Ok(())
    }
}

/// What to do when an answer fails validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Further attempts after the first (0 = none, at most 10).
    pub retries: u32,
    /// Added to the repetition penalty on each retry (>= 0).
    pub repetition_penalty_step: f32,
    /// Added to the temperature on each retry (>= 0), to leave a greedy rut.
    pub temperature_step: f32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 1,
            repetition_penalty_step: 0.15,
            temperature_step: 0.0,
        }
    }
}

impl RetryPolicy {
    /// Maximum allowed `retries`.
    pub const MAX_RETRIES: u32 = 10;

    fn check(&self) -> Result<(), (String, String)> {
        if self.retries > Self::MAX_RETRIES {
            return Err((
                "retries".into(),
                format!("must be <= {}, found {}", Self::MAX_RETRIES, self.retries),
            ));
        }
        for (field, value) in [
            ("repetition_penalty_step", self.repetition_penalty_step),
            ("temperature_step", self.temperature_step),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err((field.into(), format!("must be >= 0, found {value}")));
            }
        }
        Ok(())
    }
}

/// How the router scores and when it abstains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Sentence encoder model reference; `None` uses `mdsa_engine::DEFAULT_ENCODER`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// How many nearest examples are averaged into a domain's similarity (>= 1).
    pub top_k: usize,
    /// Weight of the description's similarity against the examples', in [0, 1].
    pub description_weight: f32,
    /// Score added per keyword hit (>= 0).
    pub keyword_bonus: f32,
    /// Cap on the total keyword bonus (>= 0).
    pub max_keyword_bonus: f32,
    /// Softmax temperature turning scores into a confidence (> 0); smaller is sharper.
    pub temperature: f32,
    /// Abstain when the best domain's score is below this (`routes fit` sets it).
    pub min_score: f32,
    /// Abstain when the confidence is below this, in [0, 1] (`routes fit` sets it).
    pub min_confidence: f32,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            encoder: None,
            top_k: 3,
            description_weight: 0.2,
            keyword_bonus: 0.04,
            max_keyword_bonus: 0.12,
            temperature: 0.05,
            min_score: 0.3,
            min_confidence: 0.0,
        }
    }
}

impl RouterConfig {
    /// The encoder to load.
    pub fn encoder_id(&self) -> &str {
        self.encoder
            .as_deref()
            .unwrap_or(mdsa_engine::DEFAULT_ENCODER)
    }

    fn check(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        if self.top_k == 0 {
            return err("top_k", "must be >= 1, found 0".into());
        }
        if !(0.0..=1.0).contains(&self.description_weight) {
            return err(
                "description_weight",
                format!("must be in [0, 1], found {}", self.description_weight),
            );
        }
        for (field, value) in [
            ("keyword_bonus", self.keyword_bonus),
            ("max_keyword_bonus", self.max_keyword_bonus),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return err(field, format!("must be >= 0, found {value}"));
            }
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return err(
                "temperature",
                format!("must be > 0, found {}", self.temperature),
            );
        }
        if !self.min_score.is_finite() {
            return err(
                "min_score",
                format!("must be a finite number, found {}", self.min_score),
            );
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return err(
                "min_confidence",
                format!("must be in [0, 1], found {}", self.min_confidence),
            );
        }
        Ok(())
    }
}

/// A domains file: router settings, defaults and the domains themselves.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainsFile {
    /// Scoring and abstention.
    #[serde(default)]
    pub router: RouterConfig,
    /// Model reference for domains that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// Domain that takes queries the router abstains on (marked as a fallback);
    /// `None` ends them as abstained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_domain: Option<String>,
    /// The domains.
    pub domains: Vec<DomainConfig>,
}

impl DomainsFile {
    /// Parses and checks a domains file; `origin` names it in errors (a path or `<builtin>`).
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let file: Self = mdsa_config::parse(text, origin)?;
        file.check()
            .map_err(|(field, message)| mdsa_config::field_error(text, origin, &field, message))?;
        Ok(file)
    }

    /// Serialises to pretty RON that [`DomainsFile::parse`] reads back.
    pub fn to_ron(&self) -> Result<String> {
        Ok(mdsa_config::to_pretty(self)?)
    }

    /// The first problem as (field path, message).
    pub(crate) fn check(&self) -> Result<(), (String, String)> {
        self.router
            .check()
            .map_err(|(f, m)| (format!("router.{f}"), m))?;
        for (i, domain) in self.domains.iter().enumerate() {
            domain
                .check()
                .map_err(|(f, m)| (format!("domains[{i}].{f}"), m))?;
            if let Some(j) = self.domains[..i].iter().position(|d| d.id == domain.id) {
                return Err((
                    format!("domains[{i}].id"),
                    format!("duplicate id {:?} (also domains[{j}])", domain.id),
                ));
            }
        }
        if let Some(fallback) = &self.fallback_domain
            && !self.domains.iter().any(|d| &d.id == fallback)
        {
            return Err((
                "fallback_domain".into(),
                format!(
                    "names unknown domain {fallback:?}; known: {}",
                    self.domains
                        .iter()
                        .map(|d| d.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// `Some(x)` may be written as plain `x`, which is how people write optional fields.
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DomainsFile> {
        DomainsFile::parse(text, "test.ron")
    }

    fn config_error(text: &str) -> (Option<usize>, String, String) {
        match parse(text).unwrap_err() {
            DomainError::Config(mdsa_config::ConfigError {
                origin,
                line,
                field,
                message,
                ..
            }) => {
                assert_eq!(origin, "test.ron");
                (line, field, message)
            }
            other => panic!("expected a config error, got {other}"),
        }
    }

    const TWO: &str = r#"(
    domains: [
        (id: "a", name: "A", examples: ["x"]),
        (
            id: "b",
            name: "B",
            examples: ["y"],
            generation: (top_p: 1.5),
        ),
    ],
)"#;

    #[test]
    fn a_range_error_names_line_and_field() {
        let (line, field, message) = config_error(TWO);
        assert_eq!(line, Some(8));
        assert_eq!(field, "domains[1].generation.top_p");
        assert!(
            message.contains("(0, 1]") && message.contains("1.5"),
            "{message}"
        );
        let shown = parse(TWO).unwrap_err().to_string();
        assert!(shown.starts_with("test.ron:8:"), "{shown}");
    }

    #[test]
    fn an_unknown_field_names_line_and_field() {
        let text = TWO.replace("top_p: 1.5", "top_pp: 0.5");
        let (line, field, message) = config_error(&text);
        assert_eq!(line, Some(8));
        assert_eq!(field, "domains[1].generation.top_pp");
        assert!(message.contains("top_pp"), "{message}");
    }

    #[test]
    fn a_type_error_names_line_and_field() {
        let text = TWO.replace("top_p: 1.5", "max_tokens: \"many\"");
        let (line, field, _) = config_error(&text);
        assert_eq!(line, Some(8));
        assert_eq!(field, "domains[1].generation.max_tokens");
    }

    #[test]
    fn a_missing_field_is_named() {
        let text = TWO.replace("name: \"B\",", "");
        let (_, field, message) = config_error(&text);
        assert_eq!(field, "domains[1].name", "{message}");
    }

    #[test]
    fn semantic_errors_name_their_fields() {
        let cases = [
            (
                TWO.replace("top_p: 1.5", "temperature: -1.0"),
                "domains[1].generation.temperature",
            ),
            (
                TWO.replace("top_p: 1.5", "max_tokens: 0"),
                "domains[1].generation.max_tokens",
            ),
            (
                TWO.replace("id: \"b\"", "id: \"a\"")
                    .replace("top_p: 1.5", "top_p: 0.5"),
                "domains[1].id",
            ),
            (
                TWO.replace("examples: [\"y\"]", "examples: []")
                    .replace("top_p: 1.5", "top_p: 0.5"),
                "domains[1].examples",
            ),
            (
                TWO.replace("top_p: 1.5", "top_p: 0.5").replace(
                    "(\n    domains",
                    "(\n    fallback_domain: \"zzz\",\n    domains",
                ),
                "fallback_domain",
            ),
            (
                TWO.replace("top_p: 1.5", "top_p: 0.5").replace(
                    "(\n    domains",
                    "(\n    router: (min_confidence: 2.0),\n    domains",
                ),
                "router.min_confidence",
            ),
            (
                TWO.replace(
                    "generation: (top_p: 1.5)",
                    "validation: (banned_patterns: [\"(\"])",
                ),
                "domains[1].validation.banned_patterns[0]",
            ),
        ];
        for (text, expected) in cases {
            let (line, field, message) = config_error(&text);
            assert_eq!(field, expected, "{message}");
            assert!(line.is_some(), "{expected}: no line");
        }
    }

    #[test]
    fn optional_fields_take_plain_or_some_values_and_round_trip() {
        let text = r#"(default_model: "m1", domains: [(id: "a", name: "A", examples: ["x"], model: Some("m2"))])"#;
        let file = parse(text).unwrap();
        assert_eq!(file.default_model.as_deref(), Some("m1"));
        assert_eq!(file.domains[0].model.as_deref(), Some("m2"));
        assert_eq!(file.domains[0].generation, GenerationSettings::default());
        let again = parse(&file.to_ron().unwrap()).unwrap();
        assert_eq!(again, file);
    }

    #[test]
    fn a_custom_domain_takes_three_lines() {
        let legal = DomainConfig::new("legal", "Contracts, tenancy and employment law")
            .keywords(["contract", "tenant"])
            .examples(["Can my landlord keep my deposit?"]);
        assert_eq!(legal.name, "legal");
        legal.validate().unwrap();
        let err = DomainConfig::new("Legal", "x")
            .examples(["y"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("id"), "{err}");
    }

    #[test]
    fn settings_convert_to_generation_params() {
        let settings = GenerationSettings {
            max_tokens: 7,
            temperature: 0.5,
            top_p: 0.9,
            repetition_penalty: 1.3,
            seed: Some(3),
            ..GenerationSettings::default()
        };
        let params = settings.to_params();
        assert_eq!(params.max_tokens, 7);
        assert_eq!(params.sampling.top_p, 0.9);
        assert_eq!(params.sampling.repetition_penalty, 1.3);
        assert_eq!(params.sampling.seed, Some(3));
        params.sampling.validate().unwrap();
    }
}
