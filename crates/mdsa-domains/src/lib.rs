//! Domains.

pub mod builtin;
pub mod cache;
pub mod config;
pub mod error;
pub mod eval;
pub mod executor;
mod keywords;
pub mod prompt;
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
pub use executor::{DomainExecutor, Execution, ExecutionEvent};
pub use prompt::PromptBuilder;
pub use registry::DomainRegistry;
pub use router::{RouteDecision, Router, Thresholds};
pub use validate::{ResponseValidator, ValidationFailure, Verdict};
