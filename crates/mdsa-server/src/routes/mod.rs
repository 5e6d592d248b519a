//! The HTTP routes, one module per audience: OpenAI clients, operators and
//! their scrapers, admins, and people at the dashboard.

mod admin;
mod chat;
mod dashboard;
mod inspect;
mod ops;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of `mdsa serve`, over `state`. Merge it into your own axum
/// application to serve mdsa beside your routes (see the crate docs).
pub fn router(state: AppState) -> Router {
    let max_body = state.limits().max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/models", get(inspect::models))
        .route("/v1/route", post(inspect::route))
        .route("/v1/embeddings", post(inspect::embeddings))
        .route("/v1/logs", get(ops::logs))
        .route("/v1/stats", get(ops::stats))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/admin/models", get(admin::models))
        .route("/admin/models/{id}/{action}", post(admin::model_action))
        .route("/admin/domains/reload", post(admin::reload_domains))
        .merge(dashboard::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route for {} {}; see /v1/models, /v1/chat/completions, /v1/route, /v1/embeddings, /metrics",
            request.method(),
            request.uri().path()
        ),
    )
}

/// A JSON body read with errors that name the field at fault (`messages[0].role:
/// invalid type: integer, expected a string`) in OpenAI's error shape, and a
/// 413 that says the limit.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.limits().max_body_bytes;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_error(rejection, limit))?;
        crate::openai::from_json_body(&bytes).map(Self)
    }
}

fn body_error(rejection: BytesRejection, limit: usize) -> ApiError {
    let status = rejection.status();
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "body_too_large",
            format!("the request body is larger than the server's limit of {limit} bytes"),
        )
    } else {
        ApiError::new(status, "unreadable_body", rejection.body_text())
    }
}
