use std::path::PathBuf;

use crate::source::SourceError;

/// Everything that can go wrong while finding, reading or running a model.
///
/// Each variant names the file (and, where there is one, the tensor or field)
/// so that a user pointed at the wrong model can see what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model reference could not be resolved to files.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A file could not be opened or read.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A safetensors file is malformed.
    #[error("{}: not a valid safetensors file: {reason}", .path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor the architecture needs is not in the weights.
    #[error("{}: tensor {name:?} is missing (the file has {available} tensors{hint})", .path.display())]
    MissingTensor {
        /// The weights file (the first, for sharded weights).
        path: PathBuf,
        /// The tensor name that was looked up.
        name: String,
        /// How many tensors the file has.
        available: usize,
        /// A similar name, if any, as ", e.g. \"...\"".
        hint: String,
    },
    /// A tensor has the wrong shape for the configuration.
    #[error("{}: tensor {name:?} has shape {found:?}, expected {expected:?} from the model configuration", .path.display())]
    Shape {
        /// The weights file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype we cannot convert.
    #[error("{}: tensor {name:?} is stored as {found}, expected one of F32, F16, BF16", .path.display())]
    DType {
        /// The weights file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The dtype in the file.
        found: String,
    },
    /// A configuration file is missing a field or has a wrong value.
    #[error("{}: field {field:?}: {reason}", .path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What was expected and found.
        reason: String,
    },
    /// The model's architecture is not one mdsa implements.
    #[error("{}: unsupported architecture {found:?}; supported: {supported}", .path.display())]
    UnsupportedArchitecture {
        /// The configuration file that named it.
        path: PathBuf,
        /// The architecture found.
        found: String,
        /// The architectures this build supports.
        supported: &'static str,
    },
    /// The tokenizer file could not be loaded.
    #[error("{}: cannot load the tokenizer: {reason}", .path.display())]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Text could not be tokenized.
    #[error("cannot tokenize input {index}: {reason}")]
    Encode {
        /// Position of the text in the batch.
        index: usize,
        /// What went wrong.
        reason: String,
    },
    /// Generation parameters out of range.
    #[error("invalid generation parameters: {reason}")]
    InvalidParams {
        /// Which parameter, what is allowed, what was found.
        reason: String,
    },
    /// A prompt plus generation would not fit the model's context window.
    #[error("{tokens} tokens do not fit the model's context of {context} tokens")]
    ContextOverflow {
        /// Tokens that were asked for (prompt and generation so far).
        tokens: usize,
        /// The context length.
        context: usize,
    },
    /// A chat template failed to compile or render.
    #[error("chat template from {origin}: {reason}")]
    ChatTemplate {
        /// Where the template came from (file and key, or configuration).
        origin: String,
        /// What went wrong.
        reason: String,
    },
    /// A weights file in a backend's own format (GGUF, quantized blocks) is
    /// malformed or lacks what was asked of it; the inner error names the file
    /// and the tensor or field.
    #[error(transparent)]
    Format(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The compute backend failed or is not compiled in.
    #[error("backend: {0}")]
    Backend(String),
    /// A spec's backend options are missing, unknown or of the wrong kind
    /// ([`crate::ModelSpec::options`]); the error names the file, line, field
    /// path and model.
    #[error(transparent)]
    Options(#[from] mdsa_config::ConfigError),
}

impl ModelError {
    /// A malformed weights file in a backend's own format.
    pub fn format(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Format(Box::new(error))
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A wrong or missing field of the configuration file at `path`.
    pub fn config(path: impl Into<PathBuf>, field: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}
