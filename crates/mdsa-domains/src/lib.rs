//! Domains.

pub mod builtin;
pub mod cache;
pub mod config;
pub mod error;
pub mod eval;
mod keywords;
pub mod registry;
mod ronpath;
pub mod router;
pub mod validate;

pub use cache::EmbeddingCache;
pub use config::{
    DomainConfig, DomainsFile, GenerationSettings, RetryPolicy, RouterConfig, ValidationRules,
};
pub use error::{DomainError, Result};
pub use eval::{EvalReport, FitReport, LabelledQuery, evaluate, fit, read_jsonl};
pub use registry::DomainRegistry;
pub use router::{RouteDecision, Router, Thresholds};
