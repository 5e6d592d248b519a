//! What a query returns, and what a streaming query reports along the way.

use std::time::Duration;

use mdsa_domains::RouteDecision;
use mdsa_domains::validate::Verdict;
use mdsa_engine::{FinishReason, Usage};
use serde::Serialize;

/// How a query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A model answered and the answer passed validation.
    Answered,
    /// No domain fits the query well enough; no model was asked.
    Abstained,
    /// A model answered, but no attempt passed validation; `verdict` says why.
    InvalidAnswer,
    /// The caller stopped the stream.
    Cancelled,
}

/// Where the time of one request went. Serialised as milliseconds
/// (`route_ms`, ...), like the route decision's `latency_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ResponseTimings {
    /// Routing (embedding the query and scoring the domains).
    #[serde(rename = "route_ms", serialize_with = "millis")]
    pub route: Duration,
    /// Getting the model: zero-ish when resident, a load otherwise.
    #[serde(rename = "load_ms", serialize_with = "millis")]
    pub load: Duration,
    /// Generation, every attempt together, with prompt building and validation.
    #[serde(rename = "generate_ms", serialize_with = "millis")]
    pub generate: Duration,
    /// The models' own compute within `route` and `generate`: the encoder's
    /// forward pass and the generator's tokenizing, prefill and decoding.
    #[serde(rename = "model_ms", serialize_with = "millis")]
    pub model: Duration,
    /// From the start of the request to the first streamed text.
    #[serde(rename = "first_token_ms", serialize_with = "optional_millis")]
    pub first_token: Option<Duration>,
    /// The whole request.
    #[serde(rename = "total_ms", serialize_with = "millis")]
    pub total: Duration,
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64() * 1e3)
}

fn optional_millis<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => millis(duration, serializer),
        None => serializer.serialize_none(),
    }
}

impl ResponseTimings {
    /// The orchestration overhead: everything but model compute and loading
    /// (scoring domains, prompt building, validation, workflow, bookkeeping,
    /// logging and metrics).
    pub fn overhead(&self) -> Duration {
        self.total
            .saturating_sub(self.load)
            .saturating_sub(self.model)
    }
}

/// The answer to one query, with everything that led to it.
#[derive(Debug, Clone, Serialize)]
pub struct QueryResponse {
    /// The request's id (in the log, the metrics and the bus events).
    pub request_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The answer (empty when abstained).
    pub text: String,
    /// The domain that answered (`None` when abstained).
    pub domain: Option<String>,
    /// The router's confidence in that domain.
    pub confidence: f32,
    /// The full route decision: every domain's score and the explanation.
    pub route: RouteDecision,
    /// The model that answered.
    pub model: Option<String>,
    /// The device it ran on (`cpu`, `gpu:0`, `remote`, ...).
    pub device: Option<String>,
    /// Why it ran there: the backend's one-sentence reason (for the local
    /// backend, `mdsa_hw::choose_device`'s).
    pub device_reason: Option<String>,
    /// The last attempt's validation verdict.
    pub verdict: Option<Verdict>,
    /// Generation attempts (1 unless validation asked for retries).
    pub attempts: u32,
    /// Why generation ended.
    pub finish_reason: Option<FinishReason>,
    /// Prompt and completion tokens of the answer that was kept.
    pub usage: Usage,
    /// Where the time went.
    pub timings: ResponseTimings,
}

/// Progress of one query, reported to a streaming caller in this order:
/// `Routed`, then (unless abstained) `Loading`, `Downloading` while a missing
/// model is fetched, `Loaded`, `Attempt` and `Text` pieces, with another
/// `Attempt` before each retry.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryEvent {
    /// The router decided.
    Routed(RouteDecision),
    /// The domain's model is being fetched from the manager.
    Loading {
        /// The model id.
        model: String,
        /// Whether it must be loaded (not resident yet).
        cold: bool,
    },
    /// A file of the model is being downloaded: when it starts, every
    /// [`DOWNLOAD_EVENT_INTERVAL`](crate::local::DOWNLOAD_EVENT_INTERVAL) while
    /// it flows, and when it is complete and verified.
    Downloading {
        /// The model id.
        model: String,
        /// The file within the repo.
        file: String,
        /// Bytes on disk so far (including a resumed prefix).
        downloaded: u64,
        /// The file's size.
        total: u64,
        /// Whether the file is complete and verified.
        done: bool,
    },
    /// The model is ready.
    Loaded {
        /// The model id.
        model: String,
        /// How long getting it took.
        duration: Duration,
    },
    /// A generation attempt starts (number 1, 2, ...); text streamed by an
    /// earlier attempt was rejected by validation and should be discarded.
    Attempt {
        /// 1-based attempt number.
        number: u32,
    },
    /// A piece of the answer.
    Text(String),
}

impl QueryEvent {
    /// A loading event as one JSON object (`{"event": "loading" |
    /// "downloading" | "loaded", "model": ..., ...}`), as `mdsa query --json`
    /// prints it and `mdsa serve` streams it; `None` for the other events.
    pub fn load_progress_json(&self) -> Option<serde_json::Value> {
        use serde_json::json;
        Some(match self {
            Self::Loading { model, cold } => {
                json!({ "event": "loading", "model": model, "cold": cold })
            }
            Self::Downloading {
                model,
                file,
                downloaded,
                total,
                done,
            } => json!({
                "event": "downloading",
                "model": model,
                "file": file,
                "downloaded": downloaded,
                "total": total,
                "done": done,
            }),
            Self::Loaded { model, duration } => json!({
                "event": "loaded",
                "model": model,
                "load_ms": duration.as_secs_f64() * 1e3,
            }),
            _ => return None,
        })
    }
}
