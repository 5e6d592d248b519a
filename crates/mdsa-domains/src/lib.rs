//! Domains for mdsa: what each specialist is for, which one a query goes to, and
//! how its answer is produced and checked.
//!
//! - [`config`]: [`DomainConfig`] and the RON domains file ([`DomainsFile`]): routing
//!   evidence (description, keywords, examples), model, prompts, generation
//!   settings, validation rules, timeout and retries. Errors name the file, line
//!   and field path (`domains[2].generation.top_p`).
//! - [`registry`] and [`builtin`]: [`DomainRegistry`], with the predefined finance,
//!   medical, support and technical domains compiled in.
//! - [`router`]: [`Router`] scores a query against each domain from its nearest
//!   examples (not one centroid: a domain is many kinds of question), its
//!   description and keyword hits; a softmax over the scores gives a confidence;
//!   below `min_score` or `min_confidence` it abstains (or hands the query to the
//!   fallback domain, marked as such), never silently picking a domain. Every
//!   [`RouteDecision`] carries all scores and an explanation.
//! - [`cache`]: example embeddings keyed by encoder and text, in memory or on
//!   disk, so a changed configuration re-embeds only what changed.
//! - [`eval`]: labelled JSONL data, accuracy / per-domain F1 / confusion matrix /
//!   abstention / latency reports, and fitting the two thresholds on data.
//! - [`prompt`], [`validate`], [`executor`]: [`PromptBuilder`] renders system prompt,
//!   template and query through the model's chat template; [`ResponseValidator`]
//!   returns a structured [`Verdict`]; [`DomainExecutor`] generates under the
//!   domain's timeout, validates and retries with a stronger repetition penalty.
//!
//! The crate holds no models. It uses the engine interfaces of `mdsa-engine`
//! ([`mdsa_engine::Embedder`], [`mdsa_engine::TextGenerator`]) passed in
//! by the caller, so whoever owns the models (a model manager, a test, a remote
//! engine) decides how they are loaded and shared.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use mdsa_domains::{DomainConfig, DomainExecutor, DomainRegistry, Router};
//! # let encoder: Arc<dyn mdsa_engine::Embedder> = unimplemented!();
//! # let generator: &dyn mdsa_engine::TextGenerator = unimplemented!();
//! let mut registry = DomainRegistry::builtin();
//! registry.insert(DomainConfig::new("legal", "Contracts, tenancy and employment law")
//!     .keywords(["contract", "lawyer", "tenant"])
//!     .examples(["Can my landlord keep my deposit?", "Is a verbal contract binding?"]))?;
//! let router = Router::new(encoder, mdsa_engine::DEFAULT_ENCODER, &registry,
//!     registry.router_config().clone())?;
//! let decision = router.route("I have a fever and a headache")?;
//! if let Some(id) = &decision.domain {
//!     let answer = DomainExecutor::new().run(registry.require(id)?, generator, &decision.query)?;
//!     println!("{} ({})", answer.text, answer.verdict);
//! }
//! # Ok(()) }
//! ```

pub mod builtin;
pub mod cache;
pub mod config;
pub mod dataset;
pub mod error;
pub mod eval;
pub mod executor;
mod keywords;
pub mod prompt;
pub mod registry;
pub mod router;
pub mod validate;

pub use cache::EmbeddingCache;
pub use config::{
    DomainConfig, DomainsFile, GenerationSettings, RetryPolicy, RouterConfig, ValidationRules,
};
pub use error::{DomainError, Result};
pub use eval::{EvalReport, FitReport, LabelledQuery, evaluate, fit, read_jsonl};
pub use executor::{DomainExecutor, Execution, ExecutionEvent};
pub use prompt::PromptBuilder;
pub use registry::DomainRegistry;
pub use router::{RouteDecision, Router, Thresholds};
pub use validate::{ResponseValidator, ValidationFailure, Verdict};

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
