//! mdsa: answer every query with the right specialist.
//!
//! A small encoder routes each query to a domain (finance, medical, support,
//! technical, or one you define); that domain's small language model, loaded on
//! demand under a memory budget, writes the answer; every request walks a visible
//! workflow and is logged and measured.
//!
//! ```no_run
//! let mdsa = mdsa::Mdsa::builder().build()?;
//! let answer = mdsa.query("I have a fever and a headache")?;
//! println!("[{}] {}", answer.domain.as_deref().unwrap_or("none"), answer.text);
//! # Ok::<(), mdsa::MdsaError>(())
//! ```
//!
//! This facade is the one crate an application needs. It owns the
//! orchestrator ([`Mdsa`]) and its configuration ([`SystemConfig`]), and
//! re-exports, one by one, the types of the layers below that an application
//! writes or reads, grouped by job:
//!
//! | module | from | what you use it for |
//! |---|---|---|
//! | (root) | `mdsa` | [`Mdsa`], [`MdsaBuilder`], [`SystemConfig`], [`QueryOptions`], [`QueryResponse`], [`QueryEvent`], [`Outcome`], [`MdsaError`], [`Backends`] |
//! | [`domains`] | `mdsa-domains` | the domains you define and the router's decisions |
//! | [`engine`] | `mdsa-engine` | model specs, model references, generation settings, and the traits a backend implements |
//! | [`local`] | `mdsa-models` | the model manager and the built-in local backend, to load a model yourself |
//! | [`monitor`] | `mdsa-monitor` | the request log, its filters and the metrics |
//! | [`hw`] | `mdsa-hw` | hardware detection, devices and the memory budget |
//! | [`bus`] | `mdsa-bus` | the message bus and each request's workflow events |
//!
//! Everything here is covered by semver. The crates' internals (weight
//! formats, quantized kernels, architectures) are not re-exported; the
//! `unstable` feature opens the whole crates under `mdsa::unstable`, outside
//! semver.
//!
//! ```compile_fail
//! // Internals of the local backend are not part of the facade.
//! use mdsa::models::gguf::GgufFile;
//! ```

pub mod config;
mod error;
mod orchestrator;
mod response;
mod telemetry;

pub use config::SystemConfig;
pub use error::MdsaError;
pub use orchestrator::{DIRECT_DOMAIN, Mdsa, MdsaBuilder, QueryOptions, new_request_id};
pub use response::{Outcome, QueryEvent, QueryResponse, ResponseTimings};
pub use telemetry::RequestEvent;

pub use mdsa_engine::{Backends, UnknownBackend};

pub mod domains {
    //! Domains and routing: what a domain is ([`DomainConfig`]), the set the
    //! router chooses from ([`DomainRegistry`]), its decision ([`RouteDecision`]),
    //! the answer's validation ([`Verdict`]) and the router's evaluation on
    //! labelled queries ([`evaluate`], [`fit`]), and domains built from
    //! labelled data ([`split_labelled`]).

    pub use mdsa_domains::config::GenerationSettings;
    pub use mdsa_domains::dataset::{
        LabelledSplit, SplitDomain, default_outputs, split_labelled, write_jsonl,
    };
    pub use mdsa_domains::eval::{
        DomainMinScore, fit_with, write_domain_min_scores, write_encoder, write_thresholds,
    };
    pub use mdsa_domains::{
        DomainConfig, DomainError, DomainRegistry, DomainsFile, EvalReport, FitReport,
        LabelledQuery, RetryPolicy, RouteDecision, RouterConfig, Thresholds, ValidationFailure,
        ValidationRules, Verdict, evaluate, fit, read_jsonl,
    };
}

pub mod engine {
    //! Models: specs ([`ModelSpec`]) and their backend options
    //! ([`SpecOptions`]), references ([`ModelRef`]), generation settings
    //! ([`GenerationParams`], [`ChatMessage`]), what an answer reports
    //! ([`Usage`], [`FinishReason`]), and the traits an engine or backend
    //! implements ([`TextGenerator`], [`Embedder`], [`ModelBackend`]).

    pub use mdsa_engine::source::{DownloadProgress, HubToken};
    pub use mdsa_engine::{
        Backends, ChatMessage, ConfigError, DEFAULT_ENCODER, Embedder, FinishReason,
        GenerationOutput, GenerationParams, LOCAL_BACKEND, LoadPlan, LoadedEngine, LoadedModel,
        ModelBackend, ModelError, ModelRef, ModelRegistry, ModelRole, ModelSpec, OptionValue,
        RegistryError, ResolveOptions, ResolvedModel, SamplingParams, SourceError, SpecOptions,
        SpecOrigin, TextGenerator, Timings, UnknownBackend, Usage, WeightFormat, cosine_similarity,
        transcript,
    };
}

pub mod local {
    //! The model manager ([`ModelManager`], what [`Mdsa::manager`](crate::Mdsa::manager)
    //! returns) and the built-in local backend, to load an encoder
    //! ([`BertEmbedder`]) or a generator ([`DecoderGenerator`]) yourself.

    pub use mdsa_models::backend::{burn_device, compiled_backends, has_gpu_backend};
    pub use mdsa_models::generate::{DecoderGenerator, DecoderOptions};
    pub use mdsa_models::gguf::GgufSummary;
    pub use mdsa_models::manager::{
        DOWNLOAD_EVENT_INTERVAL, Download, EvictReason, LocalBackend, ManagerConfig, ManagerError,
        ManagerStats, ModelEvent, ModelHandle, ModelManager, NoRoom, ResidentModel,
    };
    pub use mdsa_models::set_compute_nice;
    pub use mdsa_models::{BertEmbedder, EmbedderOptions, Pooling};
}

pub mod monitor {
    //! The request log ([`RequestRecord`], read back with [`LogFilter`]) and the
    //! metrics ([`MetricsCollector`], [`MetricsSnapshot`]), with the metric kinds
    //! a service registers beside mdsa's ([`Gauge`], [`Counter`], [`LabelledCounter`]).

    pub use mdsa_monitor::{
        Counter, ExportFormat, Gauge, GroupSnapshot, LabelledCounter, LatencyBreakdown,
        LatencySummary, LogFilter, LogQuery, LogQueryError, MetricsCollector, MetricsSnapshot,
        ModelMetricsSnapshot, MonitorError, RequestLogger, RequestRecord, RequestStatus,
        StatusCounts, read_jsonl_with_rotations, read_records, write_records,
    };
}

pub mod hw {
    //! The machine: hardware detection ([`HardwareDetector`]), devices
    //! ([`Device`], [`DevicePreference`]) and the memory budget ([`MemoryBudget`]).

    pub use mdsa_hw::{
        BudgetConfig, Device, DevicePreference, DeviceRequest, GpuProbe, HardwareDetector,
        HardwareProfile, HwError, MemoryBudget, choose_device, format_bytes,
    };
}

pub mod bus {
    //! The message bus ([`Bus`]): watch a running [`Mdsa`](crate::Mdsa) by
    //! subscribing to (or observing) each request's workflow ([`RequestState`],
    //! [`WorkflowEvent`]), its [`RequestEvent`](crate::RequestEvent)s and the
    //! model manager's [`ModelEvent`](crate::local::ModelEvent)s.

    pub use mdsa_bus::{
        Bus, Observer, OverflowPolicy, RequestState, SubscribeOptions, Subscription, WorkflowEvent,
    };
}

#[cfg(feature = "unstable")]
pub mod unstable {
    //! The whole lower crates, for what the curated modules leave out. **Not
    //! covered by semver**: anything here may change in a patch release. Needs
    //! the `unstable` feature.

    pub use mdsa_bus as bus;
    pub use mdsa_domains as domains;
    pub use mdsa_engine as engine;
    pub use mdsa_hw as hw;
    pub use mdsa_models as models;
    pub use mdsa_monitor as monitor;
}

/// The version of mdsa, as shown by `mdsa --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
