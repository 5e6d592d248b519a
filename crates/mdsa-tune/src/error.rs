//! The crate's error type.

use std::path::PathBuf;

use mdsa_engine::ModelError;

/// What can go wrong while tuning.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// Loading or running the encoder failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The examples cannot train anything.
    #[error("cannot tune on these examples: {0}")]
    Data(String),
    /// The model cannot be tuned (its pooling or layout).
    #[error("cannot tune {model}: {reason}")]
    Unsupported {
        /// The model directory.
        model: PathBuf,
        /// Why.
        reason: String,
    },
    /// A tuning setting is out of range.
    #[error("tuning option {option}: {message}")]
    Option {
        /// The option.
        option: &'static str,
        /// What was expected and found.
        message: String,
    },
    /// Writing the tuned model failed.
    #[error("{}: {message}", .path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = TuneError> = std::result::Result<T, E>;
