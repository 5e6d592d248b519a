//! A log query as people write it: the filters and export format of
//! `GET /v1/logs` and the Python `logs()`, as text and numbers, parsed into a
//! [`LogFilter`] with errors that name the field.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::export::ExportFormat;
use crate::logger::LogFilter;
use crate::record::RequestStatus;

/// The filters of a log query, as given: timestamps as RFC 3339 text, the
/// status and format by name, durations in milliseconds. Unknown fields are
/// refused when deserialised.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only this domain (`none` for abstained requests).
    pub domain: Option<String>,
    /// Only this status: completed, failed, abstained, cancelled, rejected.
    pub status: Option<String>,
    /// Only queries containing this text (redacted queries never match).
    pub text: Option<String>,
    /// Only requests at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only requests before this time (RFC 3339).
    pub until: Option<String>,
    /// Only requests that took at least this long in total.
    pub min_ms: Option<f64>,
    /// Only requests that took at most this long in total.
    pub max_ms: Option<f64>,
    /// Skip this many of the matches (newest first).
    #[serde(default)]
    pub offset: usize,
    /// At most this many records.
    pub limit: Option<usize>,
    /// The export format by name: `json`, `jsonl` or `csv`.
    pub format: Option<String>,
}

/// A field of a [`LogQuery`] that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct LogQueryError {
    /// The field, as named in the query (`since`, `status`, ...).
    pub field: &'static str,
    /// What was expected and what was found.
    pub message: String,
}

impl LogQuery {
    /// The filter this query describes.
    pub fn to_filter(&self) -> Result<LogFilter, LogQueryError> {
        let mut filter = LogFilter::new().offset(self.offset);
        if let Some(limit) = self.limit {
            filter = filter.limit(limit);
        }
        if let Some(domain) = &self.domain {
            filter = filter.domain(domain);
        }
        if let Some(status) = &self.status {
            let status: RequestStatus = status.parse().map_err(|e| invalid("status", e))?;
            filter = filter.status(status);
        }
        if let Some(text) = &self.text {
            filter = filter.text(text);
        }
        if let Some(since) = &self.since {
            filter = filter.since(timestamp("since", since)?);
        }
        if let Some(until) = &self.until {
            filter = filter.until(timestamp("until", until)?);
        }
        if let Some(ms) = self.min_ms {
            filter = filter.min_total(millis("min_ms", ms)?);
        }
        if let Some(ms) = self.max_ms {
            filter = filter.max_total(millis("max_ms", ms)?);
        }
        Ok(filter)
    }

    /// The export format, JSON when none is named.
    pub fn export_format(&self) -> Result<ExportFormat, LogQueryError> {
        match &self.format {
            None => Ok(ExportFormat::Json),
            Some(name) => name.parse().map_err(|e| invalid("format", e)),
        }
    }
}

fn invalid(field: &'static str, error: impl std::fmt::Display) -> LogQueryError {
    LogQueryError {
        field,
        message: error.to_string(),
    }
}

fn timestamp(field: &'static str, text: &str) -> Result<DateTime<Utc>, LogQueryError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            invalid(
                field,
                format!(
                    "expected an RFC 3339 time like 2026-11-26T10:00:00Z, found {text:?} ({e})"
                ),
            )
        })
}

fn millis(field: &'static str, ms: f64) -> Result<Duration, LogQueryError> {
    Duration::try_from_secs_f64(ms / 1e3)
        .map_err(|_| invalid(field, format!("expected milliseconds >= 0, found {ms}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RequestRecord;

    #[test]
    fn fields_parse_into_a_filter_and_bad_ones_are_named() {
        let query = LogQuery {
            domain: Some("finance".into()),
            status: Some("completed".into()),
            since: Some("2026-11-26T10:00:00Z".into()),
            ..LogQuery::default()
        };
        let filter = query.to_filter().unwrap();
        let record = RequestRecord::new("r1", "q")
            .with_domain("finance")
            .with_timestamp("2026-11-27T00:00:00Z".parse().unwrap());
        assert!(filter.matches(&record));
        assert!(!filter.matches(&record.clone().with_domain("medical")));
        for (query, field) in [
            (
                LogQuery {
                    status: Some("great".into()),
                    ..LogQuery::default()
                },
                "status",
            ),
            (
                LogQuery {
                    until: Some("yesterday".into()),
                    ..LogQuery::default()
                },
                "until",
            ),
            (
                LogQuery {
                    min_ms: Some(-1.0),
                    ..LogQuery::default()
                },
                "min_ms",
            ),
        ] {
            assert_eq!(query.to_filter().unwrap_err().field, field);
        }
        let csv = LogQuery {
            format: Some("CSV".into()),
            ..LogQuery::default()
        };
        assert_eq!(csv.export_format().unwrap(), ExportFormat::Csv);
        let xml = LogQuery {
            format: Some("xml".into()),
            ..LogQuery::default()
        };
        assert!(
            xml.export_format()
                .unwrap_err()
                .to_string()
                .starts_with("format: ")
        );
        assert_eq!(
            LogQuery::default().export_format().unwrap(),
            ExportFormat::Json
        );
    }
}
