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
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::auth::{require_admin_key, require_api_key};
use crate::error::ApiError;
use crate::state::AppState;

/// Every route of `mdsa serve`, over `state`. Merge it into your own axum
/// application to serve mdsa beside your routes (see the crate docs).
pub fn router(state: AppState) -> Router {
    let max_body = state.limits().max_body_bytes;
    let api = Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/models", get(inspect::models))
        .route("/v1/route", post(inspect::route))
        .route("/v1/embeddings", post(inspect::embeddings))
        .route("/v1/logs", get(ops::logs))
        .route("/v1/stats", get(ops::stats))
        .route("/metrics", get(ops::metrics))
        .route_layer(from_fn_with_state(state.clone(), require_api_key));
    let admin = Router::new()
        .route("/admin/models", get(admin::models))
        .route("/admin/models/{id}/{action}", post(admin::model_action))
        .route("/admin/domains/reload", post(admin::reload_domains))
        .route_layer(from_fn_with_state(state.clone(), require_admin_key));
    Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .merge(api)
        .merge(admin)
        .merge(dashboard::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn_with_state(state.clone(), limit_headers))
        .with_state(state)
}

/// Refuses requests whose headers total more than `max_header_bytes` (431),
/// before any route runs, naming the largest header.
async fn limit_headers(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let limit = state.limits().max_header_bytes;
    // As on the wire: `name: value` and CRLF.
    let size = |(name, value): (&axum::http::HeaderName, &axum::http::HeaderValue)| {
        name.as_str().len() + value.len() + 4
    };
    let total: usize = request.headers().iter().map(size).sum();
    if total <= limit {
        return next.run(request).await;
    }
    let largest = request
        .headers()
        .iter()
        .max_by_key(|&header| size(header))
        .map(|(name, value)| format!("; the largest is {name} ({} bytes)", value.len()))
        .unwrap_or_default();
    axum::response::IntoResponse::into_response(ApiError::new(
        axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
        format!("the request headers take {total} bytes, over the limit of {limit}{largest}"),
    ))
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
        check_content_type(&request)?;
        let limit = state.limits().max_body_bytes;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_error(rejection, limit))?;
        crate::openai::from_json_body(&bytes).map(Self)
    }
}

/// A body labelled as something other than JSON is refused (415). The types
/// a browser may send to another origin without asking first (`text/plain`,
/// forms) are among them, so a web page cannot drive the API from a user's
/// browser. No content type at all is accepted: only programs send that.
fn check_content_type(request: &Request) -> Result<(), ApiError> {
    let Some(value) = request.headers().get(axum::http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let essence = text.split(';').next().unwrap_or_default().trim();
    let is_json = essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"));
    if is_json {
        return Ok(());
    }
    Err(ApiError::new(
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("the body must be JSON with content type application/json, found {text:?}"),
    ))
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
