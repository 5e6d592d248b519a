//! What operators and their tools read: health, readiness, Prometheus
//! metrics, the request log, and the live figures behind the dashboard.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mdsa::monitor::{ExportFormat, LogQuery, LogQueryError};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /health`: the process answers.
pub(crate) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": mdsa::VERSION }))
}

/// `GET /ready`: 200 while taking traffic, 503 once draining for shutdown.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    if state.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
            .into_response()
    } else {
        Json(json!({ "status": "ready", "domains": state.mdsa().domain_ids() })).into_response()
    }
}

/// `GET /metrics`: Prometheus text (OpenMetrics).
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.mdsa().refresh_serving_metrics();
    let text = state.mdsa().metrics().encode_prometheus().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics_failed",
            e.to_string(),
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Records one `GET /v1/logs` returns unless `limit` says otherwise.
const DEFAULT_LOG_LIMIT: usize = 100;

/// `GET /v1/logs?domain=&status=&text=&since=&until=&min_ms=&max_ms=&offset=&limit=&format=json|jsonl|csv`:
/// newest first.
pub(crate) async fn logs(
    State(state): State<AppState>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(mut query) = query.map_err(|e| ApiError::invalid("query string", e.body_text()))?;
    query.limit = Some(query.limit.unwrap_or(DEFAULT_LOG_LIMIT));
    let invalid = |e: LogQueryError| ApiError::invalid(e.field, e.message);
    let format = query.export_format().map_err(invalid)?;
    let filter = query.to_filter().map_err(invalid)?;
    let mut body = Vec::new();
    state
        .mdsa()
        .logger()
        .export(&filter, format, &mut body)
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "log_export_failed",
                e.to_string(),
            )
        })?;
    let content_type = match format {
        ExportFormat::Json => "application/json",
        ExportFormat::Jsonl => "application/x-ndjson",
        ExportFormat::Csv => "text/csv; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// `GET /v1/stats`: the live figures the dashboard draws, in one JSON object:
/// the metrics snapshot, the resident models, the queue and the limits.
pub(crate) async fn stats(State(state): State<AppState>) -> Json<Value> {
    let mdsa = state.mdsa();
    mdsa.refresh_serving_metrics();
    let resident: Vec<Value> = mdsa
        .manager()
        .resident()
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id,
                "device": m.device,
                "device_reason": m.device_reason,
                "bytes": m.bytes,
                "weight_bytes": m.weight_bytes,
                "kv_bytes": m.kv_bytes,
                "pinned": m.pinned,
                "in_use": m.in_use,
                "idle_secs": m.idle_for.as_secs_f64(),
                "serving": m.serving,
            })
        })
        .collect();
    let budgets: Value = mdsa
        .manager()
        .config()
        .budgets
        .iter()
        .map(|(device, bytes)| (device.clone(), json!(bytes)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    Json(json!({
        "version": mdsa::VERSION,
        "uptime_secs": state.started().elapsed().as_secs_f64(),
        "metrics": mdsa.metrics().snapshot(),
        "resident": resident,
        "budgets": budgets,
        "queue_depth": state.queue_depth(),
        "in_flight": state.in_flight(),
        "limits": {
            "max_concurrent": state.limits().max_concurrent,
            "max_queue": state.limits().max_queue,
            "max_tokens": state.limits().max_tokens,
        },
        "domains": mdsa.domain_ids(),
        "draining": state.is_draining(),
    }))
}
