//! The engine interfaces of mdsa, with no tensor library behind them.
//!
//! mdsa answers a query with an engine: a sentence encoder ([`Embedder`]) for
//! routing and a text generator ([`TextGenerator`]) for the answer. Engines are
//! loaded by a [`ModelBackend`] from a [`ModelSpec`]: the built-in local burn
//! backend (`mdsa-models`), a remote OpenAI-compatible server (`mdsa-remote`),
//! or a backend crate of your own.
//!
//! This crate holds only those interfaces and the plain types they speak in,
//! so that the crates using them (`mdsa-domains`) and the crates implementing
//! them (`mdsa-remote`, a third-party backend) compile no tensor library. The
//! design follows ripgrep's `grep-matcher`: the trait crate depends on nothing
//! heavy, implementations live in crates of their own, and users pick the crates
//! they need.
//!
//! - [`generate`]: [`TextGenerator`], [`GenerationParams`], [`SamplingParams`],
//!   [`GenerationOutput`], [`FinishReason`], [`Usage`], [`Timings`].
//! - [`embed`]: [`Embedder`], [`dot`], [`cosine_similarity`].
//! - [`chat`]: [`ChatMessage`] and a plain [`transcript`].
//! - [`backend`]: [`ModelBackend`], [`LoadPlan`], [`LoadedModel`], [`LoadedEngine`];
//!   [`backends`]: [`Backends`], the set of backends a program offers by name.
//! - [`spec`]: [`ModelSpec`], [`ModelRole`], [`ModelRegistry`] (RON) and their
//!   errors; [`options`]: a spec's backend options ([`SpecOptions`]), read
//!   into a backend's typed struct; [`format`]: [`WeightFormat`].
//! - [`source`]: [`ModelRef`], what a user names a model by (a directory, a
//!   `.gguf` file, a Hub id), and its resolution to files in the Hugging Face
//!   cache, shared by every backend that reads local files.
//! - [`ModelError`]: every error an engine reports, naming the file, tensor or
//!   field.

pub mod backend;
pub mod backends;
pub mod chat;
pub mod embed;
mod error;
pub mod format;
pub mod generate;
pub mod options;
pub mod source;
pub mod spec;
pub mod vector;

/// The router's sentence encoder, used when no model is named.
pub const DEFAULT_ENCODER: &str = "sentence-transformers/all-MiniLM-L6-v2";

pub use backend::{LOCAL_BACKEND, LoadPlan, LoadedEngine, LoadedModel, ModelBackend, device_label};
pub use backends::{Backends, UnknownBackend};
pub use chat::{ChatMessage, transcript};
pub use embed::{Embedder, cosine_similarity, dot};
pub use error::ModelError;
pub use format::WeightFormat;
pub use generate::{
    FinishReason, GenerationOutput, GenerationParams, SamplingParams, ServingStats, TextGenerator,
    Timings, Usage,
};
pub use mdsa_config::ConfigError;
pub use options::{OptionValue, SpecOptions, SpecOrigin};
pub use source::{DownloadProgress, ModelRef, ResolveOptions, ResolvedModel, SourceError};
pub use spec::{ModelRegistry, ModelRole, ModelSpec, RegistryError};

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
