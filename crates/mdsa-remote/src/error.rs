//! What can go wrong talking to the server, and how it reaches mdsa.

use mdsa_engine::ModelError;

use crate::config::ConfigError;

/// A failed exchange with the server. Every variant names the URL.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The spec's options are wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No connection, or it failed while the answer was read.
    #[error("{url}: connection failed: {cause}")]
    Connection {
        /// The URL requested.
        url: String,
        /// What the client reported.
        cause: String,
    },
    /// A configured time limit passed.
    #[error("{url}: timed out ({cause})")]
    Timeout {
        /// The URL requested.
        url: String,
        /// Which limit.
        cause: String,
    },
    /// The server answered with a status other than 2xx.
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's error message, or the start of its answer.
        message: String,
    },
    /// The server reported an error inside a stream that had started.
    #[error("{url}: the server reported an error mid-stream: {message}")]
    Stream {
        /// The URL requested.
        url: String,
        /// The server's error message.
        message: String,
    },
    /// The answer is not what the OpenAI API specifies.
    #[error("{url}: unexpected answer: {reason}")]
    Protocol {
        /// The URL requested.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// `/models` does not list the spec's model.
    #[error("{url}: the server does not serve model {model:?}; it serves {available}")]
    ModelNotServed {
        /// The `/models` URL.
        url: String,
        /// The model name asked for.
        model: String,
        /// A few of the names it lists.
        available: String,
    },
    /// A transient failure persisted through every retry.
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp {
        /// Attempts made, the first included.
        attempts: u32,
        /// The last attempt's failure.
        last: Box<RemoteError>,
    },
    /// The stream failed after text reached the caller. Retrying would send
    /// that text again, so the failure is returned as it is.
    #[error("{0} (after text was streamed, so not retried)")]
    Interrupted(Box<RemoteError>),
}

impl RemoteError {
    /// Whether another attempt may succeed: connection failures, timeouts and
    /// the statuses servers use for "busy" or "not ready yet".
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connection { .. } | Self::Timeout { .. } => true,
            Self::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// Maps a client error for `url`.
    pub(crate) fn transport(url: &str, error: ureq::Error) -> Self {
        match error {
            ureq::Error::Timeout(which) => Self::Timeout {
                url: url.to_string(),
                // Name the option to raise, where one sets the limit that passed.
                cause: match which {
                    ureq::Timeout::PerRead => "no data within `read_timeout_secs`".into(),
                    ureq::Timeout::Connect => "no connection within `connect_timeout_secs`".into(),
                    ureq::Timeout::Global => "the request outlasted `timeout_secs`".into(),
                    other => format!("{other} limit"),
                },
            },
            other => Self::Connection {
                url: url.to_string(),
                cause: other.to_string(),
            },
        }
    }

    /// Maps an error from reading a response body for `url`. The body reader
    /// wraps the client's errors in `io::Error`; unwrapping them keeps timeouts
    /// recognisable.
    pub(crate) fn body(url: &str, error: std::io::Error) -> Self {
        Self::transport(url, ureq::Error::from(error))
    }
}

/// mdsa sees backend failures as [`ModelError::Backend`]; the message keeps
/// every detail.
impl From<RemoteError> for ModelError {
    fn from(error: RemoteError) -> Self {
        ModelError::Backend(format!("{}: {error}", crate::BACKEND_NAME))
    }
}

/// Option errors stay [`ModelError::Options`] (a mistake in the file, not a
/// failing server); the rest become [`ModelError::Backend`].
impl From<ConfigError> for ModelError {
    fn from(error: ConfigError) -> Self {
        match error {
            ConfigError::Options(error) => ModelError::Options(error),
            other => RemoteError::Config(other).into(),
        }
    }
}
