//! Domains.

pub mod builtin;
pub mod config;
pub mod error;
pub mod registry;
mod ronpath;
pub mod validate;

pub use config::{
    DomainConfig, DomainsFile, GenerationSettings, RetryPolicy, RouterConfig, ValidationRules,
};
pub use error::{DomainError, Result};
pub use registry::DomainRegistry;
