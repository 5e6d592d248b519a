//! The orchestrator: route, load, execute, validate, log — one request at a
//! time per call, any number of calls at once.
//!
//! This file builds an [`Mdsa`] and holds what requests share (models, domains,
//! router, bus); `pipeline` is one request's path through the stages.

mod pipeline;

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mdsa_bus::{Bus, RequestState, Workflow};
use mdsa_domains::executor::DomainExecutor;
use mdsa_domains::{DomainConfig, DomainRegistry, EmbeddingCache, RouteDecision, Router};
use mdsa_engine::{ChatMessage, ModelBackend, WeightFormat};
use mdsa_engine::{spec::ModelRegistry, spec::ModelRole, spec::ModelSpec};
use mdsa_models::manager::{LocalBackend, ManagerConfig, ModelHandle, ModelManager};
use mdsa_monitor::{LoggerConfig, MetricsCollector, ModelServing, RequestLogger, SinkConfig};

use crate::config::SystemConfig;
use crate::error::MdsaError;
use crate::response::{QueryEvent, QueryResponse};
use crate::telemetry::Telemetry;

/// Per-request choices that override the configuration. Deserialises from
/// the field names below (all optional, unknown ones refused), as bindings
/// and configuration-driven callers pass them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryOptions {
    /// The request's id in the log, metrics and bus events (default: a new
    /// unique one). A server passes its own so its responses and the log agree.
    pub request_id: Option<String>,
    /// Answer in this domain instead of routing.
    pub domain: Option<String>,
    /// Answer with this model. With `domain` set, it replaces the domain's
    /// model; alone, nothing is routed: the model answers the conversation as
    /// given, with no domain prompt (the request is logged under the domain
    /// [`DIRECT_DOMAIN`]). This is how one mdsa serves another's remote backend.
    pub model: Option<String>,
    /// Earlier turns of the conversation, oldest first (the query is the new
    /// user turn). System messages join the domain's system prompt.
    pub history: Vec<ChatMessage>,
    /// Cap on generated tokens, below the domain's own.
    pub max_tokens: Option<usize>,
    /// Sampling temperature instead of the domain's.
    pub temperature: Option<f32>,
    /// Nucleus sampling mass instead of the domain's.
    pub top_p: Option<f32>,
    /// Strings that end the answer, besides the domain's.
    pub stop: Vec<String>,
    /// Seed for reproducible sampling.
    pub seed: Option<u64>,
}

impl QueryOptions {
    /// The domain's settings with this request's overrides, borrowed when
    /// there are none (the common case costs no copy).
    fn apply<'d>(&self, domain: &'d DomainConfig) -> Cow<'d, DomainConfig> {
        let generation = &domain.generation;
        let lower_cap = self.max_tokens.filter(|&cap| cap < generation.max_tokens);
        if lower_cap.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop.is_empty()
            && self.seed.is_none()
        {
            return Cow::Borrowed(domain);
        }
        let mut domain = domain.execution_settings();
        let generation = &mut domain.generation;
        if let Some(cap) = lower_cap {
            generation.max_tokens = cap;
        }
        if let Some(temperature) = self.temperature {
            generation.temperature = temperature;
        }
        if let Some(top_p) = self.top_p {
            generation.top_p = top_p;
        }
        generation.stop.extend(self.stop.iter().cloned());
        if self.seed.is_some() {
            generation.seed = self.seed;
        }
        Cow::Owned(domain)
    }
}

/// The domains and the router built over them; swapped as one on reload, so a
/// request in flight finishes on the set it started with.
struct DomainSet {
    registry: DomainRegistry,
    router: Router,
}

struct Inner {
    config: SystemConfig,
    manager: ModelManager,
    domains: RwLock<Arc<DomainSet>>,
    bus: Bus,
    logger: Arc<RequestLogger>,
    metrics: MetricsCollector,
    executor: DomainExecutor,
    // Keeps the router's encoder counted as in use by the manager.
    _encoder: ModelHandle,
    telemetry: Telemetry,
}

/// Answers every query with the right specialist. Cheap to clone and share
/// between threads: clones use the same models, domains, log and metrics.
///
/// ```no_run
/// let mdsa = mdsa::Mdsa::builder().build()?;
/// let answer = mdsa.query("I have a fever and a headache")?;
/// println!("[{}] {}", answer.domain.as_deref().unwrap_or("none"), answer.text);
/// # Ok::<(), mdsa::MdsaError>(())
/// ```
#[derive(Clone)]
pub struct Mdsa {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mdsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mdsa")
            .field("domains", &self.domain_ids())
            .finish_non_exhaustive()
    }
}

/// Builds an [`Mdsa`]: configuration, domains, and extension points.
#[derive(Default)]
pub struct MdsaBuilder {
    config: Option<SystemConfig>,
    domains: Option<DomainRegistry>,
    extra_domains: Vec<DomainConfig>,
    bus: Option<Bus>,
    backends: Vec<Arc<dyn ModelBackend>>,
}

impl MdsaBuilder {
    /// The system configuration (default: [`SystemConfig::default`]).
    pub fn config(mut self, config: SystemConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Domains that replace the configuration's (or the built-in) ones.
    pub fn domains(mut self, domains: DomainRegistry) -> Self {
        self.domains = Some(domains);
        self
    }

    /// Adds (or replaces, by id) one domain.
    pub fn domain(mut self, domain: DomainConfig) -> Self {
        self.extra_domains.push(domain);
        self
    }

    /// The bus that workflow and model events are published on (default: a new one).
    pub fn bus(mut self, bus: Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// A model backend beside the built-in local one (selected per model by
    /// its spec's `backend`).
    pub fn backend(mut self, backend: Arc<dyn ModelBackend>) -> Self {
        self.backends.push(backend);
        self
    }

    /// Every backend of `backends` ([`crate::Backends`]), as [`backend`](Self::backend) each.
    pub fn backends(mut self, backends: &crate::Backends) -> Self {
        self.backends.extend(backends.iter().cloned());
        self
    }

    /// Loads the encoder, embeds the domains and preloads what the
    /// configuration asks for.
    pub fn build(self) -> Result<Mdsa, MdsaError> {
        let config = self.config.unwrap_or_default();
        let mut domains = match self.domains {
            Some(domains) => domains,
            None => match &config.domains {
                Some(path) => DomainRegistry::from_file(path)?,
                None => DomainRegistry::builtin(),
            },
        };
        for domain in self.extra_domains {
            domains.insert(domain)?;
        }
        // A domains file may name its own encoder (`mdsa routes tune` points
        // it at the tuned one): it replaces the source of the router's encoder.
        let mut config = config;
        if let Some(source) = domains.router_config().encoder.clone() {
            let encoder = config.encoder.clone();
            if let Some(spec) = config.models.iter_mut().find(|m| m.id == encoder) {
                spec.source = source;
            }
        }

        let bus = self.bus.unwrap_or_default();
        let metrics = MetricsCollector::default();
        let mut registry = ModelRegistry::new();
        for spec in &config.models {
            registry
                .insert(spec.clone())
                .map_err(ManagerErrorFrom::from)?;
        }
        // The machine is detected once: the manager's byte budgets and the
        // local backend's device choice use the same figures.
        let profile = mdsa_hw::HardwareDetector::detect();
        let budget = mdsa_hw::MemoryBudget::from_profile(
            &profile,
            &mdsa_hw::BudgetConfig {
                ram_fraction: config.budget.ram_fraction,
                vram_fraction: config.budget.vram_fraction,
                ram_bytes: config.budget.ram_bytes,
                vram_bytes: config.budget.vram_bytes,
            },
        )?;
        let mut manager_config = ManagerConfig::from_budget(&budget);
        manager_config.max_models = config.budget.max_models;
        manager_config.wait_for_release = config
            .budget
            .wait_for_release_secs
            .map(Duration::from_secs_f64);
        // The built-in backend resolves (and downloads) as the config says
        // and places models on the machine detected above; a backend of the
        // caller's with the same name still replaces it.
        let local = LocalBackend::new(config.resolve_options())
            .with_hardware(profile, budget)
            .with_kv_sequences(config.budget.sequences_per_model);
        let mut builder = ModelManager::builder(registry)
            .config(manager_config)
            .bus(bus.clone())
            .backend(Arc::new(local));
        for backend in self.backends {
            builder = builder.backend(backend);
        }
        let manager = builder.build();
        register_domain_models(&manager, &config, &domains)?;

        let encoder = manager.get(&config.encoder)?;
        let embedder = encoder
            .as_embedder()
            .ok_or_else(|| MdsaError::WrongRole {
                id: config.encoder.clone(),
                expected: "encoder",
            })?
            .clone();
        let cache = match &config.embedding_cache {
            Some(path) => EmbeddingCache::persistent(path)?,
            None => EmbeddingCache::new(),
        };
        let router_config = domains.router_config().clone();
        // Cached vectors belong to the encoder, its weight format and its
        // prompt (a sentence-transformers prompt changes every vector).
        let spec = encoder.spec();
        let mut encoder_key = match spec.quantization {
            WeightFormat::Stored | WeightFormat::F32 => spec.source.clone(),
            format => format!("{}#{format}", spec.source),
        };
        if let Some(prompt) = spec.options.get("prompt_name").and_then(|p| p.as_str()) {
            encoder_key = format!("{encoder_key}#prompt={prompt}");
        }
        let router = Router::with_cache(
            embedder,
            &encoder_key,
            &domains,
            router_config,
            Arc::new(cache),
        )?;
        manager.preload(config.preload.iter().map(String::as_str))?;

        let mut logger_config = LoggerConfig {
            capacity: config.logging.capacity,
            ..LoggerConfig::default()
        };
        if let Some(redact) = &config.logging.redact_domains {
            logger_config.redact_domains = redact.clone();
        }
        if let Some(file) = &config.logging.file {
            // The sink opens the file but does not create its folder; without
            // this a fresh machine (no `~/.local/share/mdsa` yet) would never
            // log. Best effort: a log that cannot be written must not stop
            // mdsa from answering.
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(dir);
            }
            logger_config.sink = Some(SinkConfig::new(file));
        }
        let logger = Arc::new(RequestLogger::new(logger_config));

        let telemetry = Telemetry::wire(&bus, &metrics, Arc::clone(&logger));
        Ok(Mdsa {
            inner: Arc::new(Inner {
                config,
                manager,
                domains: RwLock::new(Arc::new(DomainSet {
                    registry: domains,
                    router,
                })),
                bus,
                logger,
                metrics,
                executor: DomainExecutor::new(),
                _encoder: encoder,
                telemetry,
            }),
        })
    }
}

/// Registers, with default settings, the model references that domains name
/// directly instead of by a configured id, and checks each domain against
/// its model: a model that is neither registered nor a valid reference, or a
/// `max_tokens` the model's configured context cannot hold, is an error here,
/// at build or reload, not on the first query.
///
/// A reference may be a local path: domains files and the system
/// configuration are trusted local configuration, like the command line. A
/// name that arrives over HTTP is never resolved: the server only accepts
/// registered model ids and domain ids.
fn register_domain_models(
    manager: &ModelManager,
    config: &SystemConfig,
    domains: &DomainRegistry,
) -> Result<(), MdsaError> {
    let error = |field: String, message: String| {
        MdsaError::Config(mdsa_config::ConfigError {
            origin: domains.origin().to_string(),
            line: None,
            column: None,
            field,
            message,
        })
    };
    let known = || {
        manager
            .specs()
            .into_iter()
            .filter(|s| s.role == ModelRole::Generator)
            .map(|s| s.id)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let wanted = domains
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let model = d.model.as_deref()?;
            Some((
                format!("domains[{i}].model"),
                format!("domain {:?}", d.id),
                model,
            ))
        })
        .chain(
            domains
                .default_model()
                .map(|m| ("default_model".to_string(), "the default".to_string(), m)),
        );
    for (field, who, reference) in wanted {
        if manager.spec(reference).is_none() {
            let mut spec = ModelSpec::new(reference, reference, ModelRole::Generator);
            spec.max_context = config
                .model(&config.default_generator)
                .and_then(|s| s.max_context);
            if let Err(e) = manager.register(spec) {
                return Err(error(
                    field,
                    format!(
                        "{who} names model {reference:?}, which is not a registered model (known: {}) nor a model reference ({e})",
                        known()
                    ),
                ));
            }
        }
    }
    for (i, domain) in domains.iter().enumerate() {
        let model = domains
            .model_for(domain)
            .unwrap_or(&config.default_generator);
        let Some(context) = manager.spec(model).and_then(|s| s.max_context) else {
            // The context is the model's own, known once it is loaded; the
            // engine then stops an answer at the context's end.
            continue;
        };
        let max_tokens = domain.generation.max_tokens;
        if max_tokens >= context {
            return Err(error(
                format!("domains[{i}].generation.max_tokens"),
                format!(
                    "domain {:?} allows {max_tokens} tokens but its model {model:?} has a context of {context} tokens for the prompt and the answer together; expected fewer than {context}",
                    domain.id
                ),
            ));
        }
    }
    Ok(())
}

/// Lets `?` turn a registry error into the facade's error through the manager's.
type ManagerErrorFrom = mdsa_models::manager::ManagerError;

impl Mdsa {
    /// Starts building with the default configuration.
    pub fn builder() -> MdsaBuilder {
        MdsaBuilder::default()
    }

    /// The system configuration in use.
    pub fn config(&self) -> &SystemConfig {
        &self.inner.config
    }

    /// The model manager (resident models, load/unload/pin).
    pub fn manager(&self) -> &ModelManager {
        &self.inner.manager
    }

    /// The bus that every request's workflow events and model events go to.
    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    /// The request log.
    pub fn logger(&self) -> &RequestLogger {
        &self.inner.logger
    }

    /// Latency, throughput and model metrics (Prometheus text via
    /// [`MetricsCollector::encode_prometheus`]).
    pub fn metrics(&self) -> &MetricsCollector {
        &self.inner.metrics
    }

    /// Copies every resident generator's batching figures (passes, batch
    /// sizes, sequences running, KV bytes held) into [`Mdsa::metrics`], where
    /// the Prometheus text and snapshots read them. `mdsa serve` calls this on
    /// every scrape of `/metrics` and `/v1/stats`.
    pub fn refresh_serving_metrics(&self) {
        let models = self.inner.metrics.model_metrics();
        for model in self.inner.manager.resident() {
            if let Some(s) = model.serving {
                models.record_serving(
                    &model.id,
                    ModelServing {
                        batch_steps: s.steps,
                        batch_sequences: s.sequence_steps,
                        largest_batch: s.largest_batch as u64,
                        active_sequences: s.active_sequences as u64,
                        kv_cache_bytes: s.kv_cache_bytes,
                    },
                );
            }
        }
    }

    /// The last error writing the request log file, if any write failed.
    pub fn last_log_error(&self) -> Option<String> {
        self.inner.telemetry.last_log_error()
    }

    fn domain_set(&self) -> Arc<DomainSet> {
        // A poisoned lock only means a reload panicked half-way; the Arc
        // inside is still a complete set.
        match self.inner.domains.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The domain ids, in configuration order.
    pub fn domain_ids(&self) -> Vec<String> {
        self.domain_set()
            .registry
            .ids()
            .map(str::to_string)
            .collect()
    }

    /// A copy of the domains in use.
    pub fn domains(&self) -> DomainRegistry {
        self.domain_set().registry.clone()
    }

    /// Replaces the domains atomically: requests in flight finish on the old
    /// set; texts already embedded are not embedded again; the generators
    /// drop the prompt prefixes they kept.
    pub fn reload_domains(&self, domains: DomainRegistry) -> Result<(), MdsaError> {
        let current = self.domain_set();
        register_domain_models(&self.inner.manager, &self.inner.config, &domains)?;
        let router = current
            .router
            .rebuild(&domains, domains.router_config().clone())?;
        let next = Arc::new(DomainSet {
            registry: domains,
            router,
        });
        match self.inner.domains.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        // The domains' prompts may have changed: their kept prefixes go.
        self.inner.manager.forget_prefixes();
        Ok(())
    }

    /// Routes a query without answering it.
    pub fn route(&self, query: &str) -> Result<RouteDecision, MdsaError> {
        check_query(query)?;
        Ok(self.domain_set().router.route(query)?)
    }

    /// Routes many queries, embedding them in batches.
    pub fn route_batch(&self, queries: &[&str]) -> Result<Vec<RouteDecision>, MdsaError> {
        for query in queries {
            check_query(query)?;
        }
        Ok(self.domain_set().router.route_batch(queries)?)
    }

    /// Runs `f` with the router in use (for evaluation and fitting).
    pub fn with_router<R>(&self, f: impl FnOnce(&Router) -> R) -> R {
        f(&self.domain_set().router)
    }

    /// Embeds texts with the router's encoder.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, MdsaError> {
        let handle = self.inner.manager.get(&self.inner.config.encoder)?;
        let encoder = handle.as_embedder().ok_or_else(|| MdsaError::WrongRole {
            id: self.inner.config.encoder.clone(),
            expected: "encoder",
        })?;
        encoder
            .embed(texts)
            .map_err(|e| MdsaError::Domain(e.into()))
    }

    /// Routes, loads, answers, validates and logs one query.
    pub fn query(&self, query: &str) -> Result<QueryResponse, MdsaError> {
        self.query_with(query, &QueryOptions::default(), &mut |_| {
            ControlFlow::Continue(())
        })
    }

    /// Like [`Mdsa::query`], reporting progress and streaming the answer's
    /// text to `on_event`; returning `Break` cancels the request.
    pub fn query_with(
        &self,
        query: &str,
        options: &QueryOptions,
        on_event: &mut dyn FnMut(QueryEvent) -> ControlFlow<()>,
    ) -> Result<QueryResponse, MdsaError> {
        self.run_request(query, options, on_event)
    }
}

/// The domain label of requests that name a model instead of a domain
/// (see [`QueryOptions::model`]).
pub const DIRECT_DOMAIN: &str = "direct";

/// The settings a named model answers with: no system prompt, no retries,
/// only the basic checks (a non-empty answer, no repetition loop).
fn direct_domain() -> DomainConfig {
    let mut domain = DomainConfig::new(DIRECT_DOMAIN, "the model named by the request");
    domain.retry.retries = 0;
    domain
}

/// Moves the workflow on; the orchestrator only takes legal steps, so a
/// refusal is a bug worth seeing in debug builds but never worth failing a
/// user's request over.
fn advance(workflow: &mut Workflow, to: RequestState) {
    let result = workflow.advance(to);
    debug_assert!(result.is_ok(), "illegal workflow step: {result:?}");
}

fn check_query(query: &str) -> Result<(), MdsaError> {
    if query.trim().is_empty() {
        return Err(MdsaError::InvalidRequest(
            "the query is empty; expected some text to answer".into(),
        ));
    }
    Ok(())
}

/// A request id that is unique within the process and unlikely to repeat
/// across restarts: start time and a counter.
pub fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("req-{millis:x}-{n}")
}
