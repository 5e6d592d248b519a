//! `GET /v1/models`, `POST /v1/route` and `POST /v1/embeddings`: what there
//! is to ask for, where a query would go, and the router's vectors.

use axum::Json;
use axum::extract::State;
use mdsa::engine::ModelRole;
use serde_json::{Value, json};

use super::JsonBody;
use crate::error::ApiError;
use crate::openai::{EmbeddingInput, EmbeddingsRequest, RouteRequest};
use crate::state::AppState;

/// Most texts one embeddings request may carry.
const MAX_EMBEDDING_INPUTS: usize = 2048;
/// Most queries one `/v1/route` request routes.
const MAX_ROUTE_QUERIES: usize = 2048;

/// `GET /v1/models`: `auto`, then every domain, then every generator model,
/// each with an `mdsa` object saying which it is.
pub(crate) async fn models(State(state): State<AppState>) -> Json<Value> {
    let mdsa = state.mdsa();
    let created = chrono::Utc::now().timestamp();
    let entry = |id: &str, kind: &str, extra: Value| {
        json!({
            "id": id,
            "object": "model",
            "created": created,
            "owned_by": "mdsa",
            "mdsa": { "kind": kind, "detail": extra },
        })
    };
    let mut data = vec![entry(
        "auto",
        "router",
        json!({ "description": "routes each query to the domain whose model answers" }),
    )];
    let domains = mdsa.domains();
    for domain in domains.iter() {
        let model = domains
            .model_for(domain)
            .unwrap_or(&mdsa.config().default_generator);
        data.push(entry(
            &domain.id,
            "domain",
            json!({ "description": domain.description, "model": model }),
        ));
    }
    let resident = mdsa.manager().resident();
    for spec in mdsa.manager().specs() {
        if spec.role == ModelRole::Generator {
            // Where a resident model runs, and why there.
            let live = resident.iter().find(|r| r.id == spec.id);
            data.push(entry(
                &spec.id,
                "model",
                json!({
                    "source": spec.source,
                    "backend": spec.backend,
                    "resident": live.is_some(),
                    "device": live.map(|r| r.device.clone()),
                    "device_reason": live.map(|r| r.device_reason.clone()),
                }),
            ));
        }
    }
    Json(json!({ "object": "list", "data": data }))
}

/// `POST /v1/route`: the route decision, with every domain's score; for
/// many queries, `{"object": "list", "data": [decision, ...]}` in their
/// order, embedded as batches.
pub(crate) async fn route(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RouteRequest>,
) -> Result<Json<Value>, ApiError> {
    let (queries, many, param) = match (request.query, request.queries) {
        (Some(EmbeddingInput::One(query)), None) => (vec![query], false, "query"),
        (Some(EmbeddingInput::Many(queries)), None) => (queries, true, "input"),
        (None, Some(queries)) => (queries, true, "queries"),
        (None, None) => {
            return Err(ApiError::invalid(
                "query",
                "expected \"query\" (one text) or \"queries\" (a list of texts)",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "queries",
                "expected either \"query\" or \"queries\", found both",
            ));
        }
    };
    if queries.is_empty() || queries.len() > MAX_ROUTE_QUERIES {
        return Err(ApiError::invalid(
            param,
            format!(
                "expected 1 to {MAX_ROUTE_QUERIES} queries, found {}",
                queries.len()
            ),
        ));
    }
    if let Some(i) = queries.iter().position(|q| q.trim().is_empty()) {
        let param = if many {
            format!("{param}[{i}]")
        } else {
            param.to_owned()
        };
        return Err(ApiError::invalid(
            param,
            "the query is empty; expected some text to route",
        ));
    }
    let permit = state.admit().await?;
    let mdsa = state.mdsa().clone();
    let decisions = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
        if many {
            mdsa.route_batch(&queries)
        } else {
            mdsa.route(queries[0]).map(|decision| vec![decision])
        }
    })
    .await
    .map_err(task_failed)??;
    let json = if many {
        serde_json::to_value(&decisions).map(|data| json!({ "object": "list", "data": data }))
    } else {
        serde_json::to_value(&decisions[0])
    };
    Ok(Json(json.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        )
    })?))
}

/// `POST /v1/embeddings`: OpenAI's embeddings format, from the router's encoder.
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<EmbeddingsRequest>,
) -> Result<Json<Value>, ApiError> {
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("expected \"float\" or \"base64\", found {other:?}"),
            ));
        }
    };
    let texts = match request.input {
        EmbeddingInput::One(text) => vec![text],
        EmbeddingInput::Many(texts) => texts,
    };
    if texts.is_empty() || texts.len() > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::invalid(
            "input",
            format!(
                "expected 1 to {MAX_EMBEDDING_INPUTS} texts, found {}",
                texts.len()
            ),
        ));
    }
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(ApiError::invalid(
            format!("input[{i}]"),
            "expected some text, found an empty string",
        ));
    }
    let encoder = state.mdsa().config().encoder.clone();
    let permit = state.admit().await?;
    let mdsa = state.mdsa().clone();
    let (vectors, tokens) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = mdsa.embed(&refs)?;
        // An estimate: the encoder does not report its token counts.
        let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
        Ok::<_, mdsa::MdsaError>((vectors, tokens))
    })
    .await
    .map_err(task_failed)??;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| {
            let embedding = if base64 {
                json!(encode_base64(&embedding))
            } else {
                json!(embedding)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": request.model.unwrap_or(encoder),
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    })))
}

/// OpenAI's base64 embedding: the little-endian f32 bytes, base64-encoded.
fn encode_base64(vector: &[f32]) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A blocking task that panicked or was cancelled: a server error, said plainly.
pub(crate) fn task_failed(error: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        format!("the request's task failed: {error}"),
    )
}
