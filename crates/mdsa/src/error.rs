//! The facade's error type: one enum over every layer, so an application
//! matches on what went wrong without importing each crate's errors.

use std::path::PathBuf;

use mdsa_domains::DomainError;
use mdsa_models::manager::ManagerError;

/// What can go wrong building mdsa or answering a query.
#[derive(Debug, thiserror::Error)]
pub enum MdsaError {
    /// A configuration file is wrong (names file, line, column and field).
    #[error(transparent)]
    Config(#[from] mdsa_config::ConfigError),
    /// A domains file is wrong, or routing or execution failed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// A model could not be registered, loaded or made resident.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The hardware could not be read (for the memory budget).
    #[error("reading the hardware for the memory budget: {0}")]
    Hardware(#[from] mdsa_hw::HwError),
    /// The request log could not be written.
    #[error("request log: {0}")]
    Log(#[from] mdsa_monitor::MonitorError),
    /// A file could not be read.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The request itself is unusable (empty query, unknown domain forced...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A model registered for one job was asked to do another.
    #[error("model {id:?} is not a {expected}")]
    WrongRole {
        /// The model.
        id: String,
        /// What was needed (`encoder` or `generator`).
        expected: &'static str,
    },
}
