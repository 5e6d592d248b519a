//! Admin routes: load, unload and pin models; reload the domains.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mdsa::domains::DomainRegistry;
use serde_json::{Value, json};

use super::inspect::task_failed;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /admin/models`: every registered model, whether it is resident, and
/// the manager's counters.
pub(crate) async fn models(State(state): State<AppState>) -> Json<Value> {
    let manager = state.mdsa().manager();
    let resident = manager.resident();
    let models: Vec<Value> = manager
        .specs()
        .into_iter()
        .map(|spec| {
            let live = resident.iter().find(|r| r.id == spec.id);
            json!({
                "id": spec.id,
                "source": spec.source,
                "role": spec.role,
                "backend": spec.backend,
                "quantization": spec.quantization,
                "pinned": live.map_or(spec.pinned, |r| r.pinned),
                "resident": live.is_some(),
                "device": live.map(|r| r.device.clone()),
                "device_reason": live.map(|r| r.device_reason.clone()),
                "bytes": live.map(|r| r.bytes),
                "in_use": live.map_or(0, |r| r.in_use),
            })
        })
        .collect();
    let stats = manager.stats();
    Json(json!({
        "models": models,
        "stats": {
            "hits": stats.hits,
            "misses": stats.misses,
            "loads": stats.loads,
            "failures": stats.failures,
            "evictions": stats.evictions,
            "unloads": stats.unloads,
        },
    }))
}

/// `POST /admin/models/{id}/{load|unload|pin|unpin}`.
pub(crate) async fn model_action(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    if state.mdsa().manager().spec(&id).is_none() {
        let known: Vec<String> = state
            .mdsa()
            .manager()
            .specs()
            .into_iter()
            .map(|s| s.id)
            .collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "no model is registered as {id:?}; registered: {}",
                known.join(", ")
            ),
        ));
    }
    let mdsa = state.mdsa().clone();
    let model = id.clone();
    let done = match action.as_str() {
        // Loading reads files and may evict others: off the async threads.
        "load" => tokio::task::spawn_blocking(move || mdsa.manager().load(&model).map(|()| true))
            .await
            .map_err(task_failed)?,
        "unload" => mdsa.manager().unload(&model),
        "pin" => mdsa.manager().pin(&model).map(|()| true),
        "unpin" => mdsa.manager().unpin(&model).map(|()| true),
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_action",
                format!("unknown model action {other:?}; expected load, unload, pin or unpin"),
            ));
        }
    }
    .map_err(|e| ApiError::from(mdsa::MdsaError::from(e)))?;
    Ok(Json(json!({
        "model": id,
        "action": action,
        "changed": done,
        "resident": state.mdsa().manager().is_resident(&id),
    })))
}

/// `POST /admin/domains/reload`: with a body, the body is a domains file
/// (RON) to switch to; without, the configured domains file is read again.
/// Atomic: requests in flight finish on the old domains, and a file with an
/// error changes nothing.
pub(crate) async fn reload_domains(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let domains = if body.iter().all(u8::is_ascii_whitespace) {
        let Some(path) = state.mdsa().config().domains.clone() else {
            return Err(ApiError::invalid(
                "body",
                "no domains file is configured to reload; send the domains file (RON) as the body",
            ));
        };
        DomainRegistry::from_file(&path)
    } else {
        let text = std::str::from_utf8(&body)
            .map_err(|e| ApiError::invalid("body", format!("expected UTF-8 RON text: {e}")))?;
        DomainRegistry::from_str(text, "<request body>")
    }
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_domains",
            e.to_string(),
        )
    })?;
    let origin = domains.origin().to_string();
    let mdsa = state.mdsa().clone();
    let ids = tokio::task::spawn_blocking(move || {
        mdsa.reload_domains(domains)?;
        Ok::<_, mdsa::MdsaError>(mdsa.domain_ids())
    })
    .await
    .map_err(task_failed)??;
    tracing::info!(%origin, domains = ?ids, "domains reloaded");
    Ok(Json(
        json!({ "reloaded": true, "origin": origin, "domains": ids }),
    ))
}
