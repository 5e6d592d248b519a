//! The crate's error types.
//!
//! Every variant names what failed (the file, the line of a JSONL or CSV
//! input, the field) so that a single log line is enough to act on. The
//! underlying error is kept as `source()` rather than repeated in the message.

use std::io;
use std::path::PathBuf;

use crate::export::ExportFormat;

/// Errors from the request logger, the JSONL sink, the exporters and the
/// metrics collector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The JSONL sink file could not be opened or created.
    #[error("cannot open request log {}", path.display())]
    SinkOpen {
        /// The sink file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A record could not be appended to the JSONL sink. The record is still
    /// kept in memory.
    #[error("cannot write request {id:?} to request log {}", path.display())]
    SinkWrite {
        /// The sink file.
        path: PathBuf,
        /// Id of the record that was not written.
        id: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Rotating the JSONL sink failed (renaming or removing a file).
    #[error("cannot rotate request log {} to {}", from.display(), to.display())]
    SinkRotate {
        /// The file being moved or removed.
        from: PathBuf,
        /// Where it was moved to (equal to `from` for a removal).
        to: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading an input (a file or a reader) failed.
    #[error("cannot read {origin}")]
    Read {
        /// The file path, or a description of the reader.
        origin: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A line of a JSONL input is not a valid request record.
    #[error("{origin}:{line}: invalid request record")]
    JsonlLine {
        /// The file path, or a description of the reader.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The JSON error (it also knows the column).
        #[source]
        source: serde_json::Error,
    },
    /// A JSON export is not a valid array of request records.
    #[error("invalid JSON export at line {line}, column {column}")]
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A CSV export could not be parsed (bad quoting, wrong number of fields).
    #[error("invalid CSV export at line {line}")]
    Csv {
        /// 1-based line of the error, 0 when unknown.
        line: u64,
        /// The CSV error.
        #[source]
        source: csv::Error,
    },
    /// A CSV export does not start with the expected header.
    #[error("CSV export header is {found:?}, expected {expected:?}")]
    CsvHeader {
        /// The header this crate writes.
        expected: String,
        /// The header found in the input.
        found: String,
    },
    /// A CSV cell could not be parsed into its field.
    #[error("CSV export line {line}: invalid {field} {value:?}: {reason}")]
    CsvField {
        /// 1-based line of the record.
        line: u64,
        /// The column name.
        field: &'static str,
        /// The cell content.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Writing an export failed.
    #[error("cannot write {format} export")]
    ExportWrite {
        /// The format being written.
        format: ExportFormat,
        /// The I/O error (serialisation errors are wrapped as I/O errors).
        #[source]
        source: io::Error,
    },
    /// The background thread taking periodic snapshots could not be spawned.
    #[error("cannot start the metrics history thread")]
    HistoryThread {
        /// The spawn error.
        #[source]
        source: io::Error,
    },
    /// Encoding the Prometheus exposition failed (only a metric registered by
    /// another crate can fail this way).
    #[error("cannot encode the Prometheus exposition")]
    Prometheus {
        /// The formatting error.
        #[source]
        source: std::fmt::Error,
    },
}

/// A string that is not the name of any variant of a small enum such as
/// [`RequestStatus`](crate::RequestStatus) or [`ExportFormat`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}, expected one of: {expected}")]
pub struct ParseEnumError {
    /// What was being parsed, e.g. `request status`.
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
    /// The accepted spellings, comma separated.
    pub expected: &'static str,
}
