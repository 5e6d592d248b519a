//! One request as it is logged: routing decision, model, outcome, tokens and
//! where the time went.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ParseEnumError;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// A model answered.
    Completed,
    /// Something went wrong while answering; see [`RequestRecord::error`].
    Failed,
    /// The router was not confident enough to pick a domain.
    Abstained,
    /// The caller gave up before the answer was ready.
    Cancelled,
    /// The request was refused before any work (invalid input, overload).
    Rejected,
}

impl RequestStatus {
    /// Every status, in declaration order.
    pub const ALL: [RequestStatus; 5] = [
        RequestStatus::Completed,
        RequestStatus::Failed,
        RequestStatus::Abstained,
        RequestStatus::Cancelled,
        RequestStatus::Rejected,
    ];

    /// The snake_case name used in JSON, CSV and Prometheus labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Completed => "completed",
            RequestStatus::Failed => "failed",
            RequestStatus::Abstained => "abstained",
            RequestStatus::Cancelled => "cancelled",
            RequestStatus::Rejected => "rejected",
        }
    }

    /// Whether the status counts towards the error rate.
    ///
    /// Only [`Failed`](Self::Failed) does: abstaining is a routing decision,
    /// cancelling is the caller's choice and rejections are counted on their
    /// own, so mixing them in would make the error rate page on client
    /// behaviour.
    pub const fn is_error(self) -> bool {
        matches!(self, RequestStatus::Failed)
    }

    /// Position in [`Self::ALL`], used to index per-status counters.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestStatus {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RequestStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ParseEnumError {
                kind: "request status",
                value: s.to_owned(),
                expected: "completed, failed, abstained, cancelled, rejected",
            })
    }
}

/// Where the time of one request went, in whole microseconds.
///
/// Integers rather than floating-point milliseconds: they convert from
/// [`Duration`] without rounding surprises, cannot be NaN (which JSON cannot
/// represent) and round-trip exactly through every export format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBreakdown {
    /// Embedding the query and choosing a domain.
    pub route_us: u64,
    /// Waiting for a free model slot.
    pub queue_us: u64,
    /// Loading the model, when it was not resident.
    pub load_us: u64,
    /// Generating the answer.
    pub generate_us: u64,
    /// Validating the answer.
    pub validate_us: u64,
    /// End to end, measured on its own (it is not the sum of the parts).
    pub total_us: u64,
    /// From the start of the request to the first generated token, when the
    /// answer was streamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_us: Option<u64>,
}

/// Saturating conversion: a duration beyond `u64::MAX` microseconds (half a
/// million years) is a bug upstream, not a reason to fail logging.
pub(crate) fn duration_to_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl LatencyBreakdown {
    /// Sets the routing time.
    #[must_use]
    pub fn with_route(mut self, d: Duration) -> Self {
        self.route_us = duration_to_us(d);
        self
    }

    /// Sets the queueing time.
    #[must_use]
    pub fn with_queue(mut self, d: Duration) -> Self {
        self.queue_us = duration_to_us(d);
        self
    }

    /// Sets the model loading time.
    #[must_use]
    pub fn with_load(mut self, d: Duration) -> Self {
        self.load_us = duration_to_us(d);
        self
    }

    /// Sets the generation time.
    #[must_use]
    pub fn with_generate(mut self, d: Duration) -> Self {
        self.generate_us = duration_to_us(d);
        self
    }

    /// Sets the validation time.
    #[must_use]
    pub fn with_validate(mut self, d: Duration) -> Self {
        self.validate_us = duration_to_us(d);
        self
    }

    /// Sets the end-to-end time.
    #[must_use]
    pub fn with_total(mut self, d: Duration) -> Self {
        self.total_us = duration_to_us(d);
        self
    }

    /// Sets the time to the first generated token.
    #[must_use]
    pub fn with_first_token(mut self, d: Duration) -> Self {
        self.first_token_us = Some(duration_to_us(d));
        self
    }

    /// The end-to-end time.
    pub fn total(&self) -> Duration {
        Duration::from_micros(self.total_us)
    }

    /// The time to the first generated token, if known.
    pub fn first_token(&self) -> Option<Duration> {
        self.first_token_us.map(Duration::from_micros)
    }
}

/// One logged request.
///
/// Build it with [`RequestRecord::new`] and the `with_*` setters; every field
/// is public for callers that prefer struct syntax. The
/// [`RequestLogger`](crate::RequestLogger) fills [`query_hash`](Self::query_hash)
/// and applies the configured query storage policy, so callers always pass
/// the plain query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Request id, unique per request (its format is the caller's choice).
    pub id: String,
    /// When the request arrived.
    pub timestamp: DateTime<Utc>,
    /// The query text; `None` when storage is disabled or redacted.
    pub query: Option<String>,
    /// Lowercase hex SHA-256 of the query, so repeated queries can be
    /// correlated without storing them.
    pub query_hash: Option<String>,
    /// The chosen domain; `None` when the router abstained or never ran.
    pub domain: Option<String>,
    /// The router's confidence in [`domain`](Self::domain).
    pub confidence: Option<f32>,
    /// The model that answered (or was meant to).
    pub model: Option<String>,
    /// How the request ended.
    pub status: RequestStatus,
    /// Error message for failed, rejected or cancelled requests.
    pub error: Option<String>,
    /// Prompt tokens.
    pub tokens_in: u32,
    /// Generated tokens.
    pub tokens_out: u32,
    /// Where the time went.
    pub latency: LatencyBreakdown,
}

impl RequestRecord {
    /// A completed request received now, with everything else empty.
    pub fn new(id: impl Into<String>, query: impl Into<String>) -> Self {
        RequestRecord {
            id: id.into(),
            timestamp: Utc::now(),
            query: Some(query.into()),
            query_hash: None,
            domain: None,
            confidence: None,
            model: None,
            status: RequestStatus::Completed,
            error: None,
            tokens_in: 0,
            tokens_out: 0,
            latency: LatencyBreakdown::default(),
        }
    }

    /// Sets the arrival time.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: DateTime<Utc>) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Sets the routed domain and the router's confidence.
    #[must_use]
    pub fn with_route(mut self, domain: impl Into<String>, confidence: f32) -> Self {
        self.domain = Some(domain.into());
        self.confidence = Some(confidence);
        self
    }

    /// Sets the routed domain only.
    #[must_use]
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets the model.
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the status.
    #[must_use]
    pub fn with_status(mut self, status: RequestStatus) -> Self {
        self.status = status;
        self
    }

    /// Marks the request failed with `error`.
    #[must_use]
    pub fn failed(mut self, error: impl Into<String>) -> Self {
        self.status = RequestStatus::Failed;
        self.error = Some(error.into());
        self
    }

    /// Sets the error message without touching the status.
    #[must_use]
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// Sets prompt and generated token counts.
    #[must_use]
    pub fn with_tokens(mut self, tokens_in: u32, tokens_out: u32) -> Self {
        self.tokens_in = tokens_in;
        self.tokens_out = tokens_out;
        self
    }

    /// Sets the latency breakdown.
    #[must_use]
    pub fn with_latency(mut self, latency: LatencyBreakdown) -> Self {
        self.latency = latency;
        self
    }

    /// The record in the canonical form the logger stores.
    ///
    /// Empty optional strings become `None`, because CSV has a single empty
    /// cell for both and an export must read back equal. A non-finite
    /// confidence becomes `None`, because JSON cannot represent it.
    #[must_use]
    pub fn normalized(mut self) -> Self {
        for field in [
            &mut self.query,
            &mut self.query_hash,
            &mut self.domain,
            &mut self.model,
            &mut self.error,
        ] {
            if field.as_deref() == Some("") {
                *field = None;
            }
        }
        if self.confidence.is_some_and(|c| !c.is_finite()) {
            self.confidence = None;
        }
        self
    }
}

/// Lowercase hex SHA-256 of `query`, as stored in
/// [`RequestRecord::query_hash`].
pub fn query_sha256(query: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(query.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for status in RequestStatus::ALL {
            assert_eq!(status.as_str().parse::<RequestStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(RequestStatus::ALL[status.index()], status);
        }
        let err = "done".parse::<RequestStatus>().unwrap_err();
        assert!(err.to_string().contains("\"done\""), "{err}");
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            query_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn normalized_drops_empty_strings_and_nan() {
        let mut record = RequestRecord::new("1", "").with_domain("").with_model("m");
        record.confidence = Some(f32::NAN);
        let record = record.normalized();
        assert_eq!(record.query, None);
        assert_eq!(record.domain, None);
        assert_eq!(record.model.as_deref(), Some("m"));
        assert_eq!(record.confidence, None);
    }

    #[test]
    fn latency_setters_convert_durations() {
        let l = LatencyBreakdown::default()
            .with_total(Duration::from_millis(1500))
            .with_first_token(Duration::from_nanos(2_999));
        assert_eq!(l.total_us, 1_500_000);
        assert_eq!(l.first_token_us, Some(2));
        assert_eq!(l.total(), Duration::from_millis(1500));
        assert_eq!(duration_to_us(Duration::MAX), u64::MAX);
    }
}
