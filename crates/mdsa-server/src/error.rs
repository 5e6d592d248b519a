//! Errors as HTTP answers, in OpenAI's shape
//! (`{"error": {"message", "type", "param", "code"}}`), so client libraries
//! raise them as the exceptions their users already handle.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mdsa::MdsaError;
use mdsa::domains::DomainError;
use mdsa::engine::ModelError;
use mdsa::local::ManagerError;
use serde::Serialize;

/// An error answer: status, message and the request part it is about.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong: what was expected, what was found.
    pub message: String,
    /// The request field at fault (`messages[2].role`), when there is one.
    pub param: Option<String>,
    /// A stable code for programs (`model_not_found`, `queue_full`, ...).
    pub code: &'static str,
}

impl ApiError {
    /// Any error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code,
        }
    }

    /// A 400 about one request field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let param = param.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!("{param}: {}", message.into()),
            param: Some(param),
            code: "invalid_request",
        }
    }

    /// The body could not be read as the JSON this route takes; names the
    /// field path and what serde expected.
    pub fn bad_json(error: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || path.is_empty() {
            Self {
                status: StatusCode::BAD_REQUEST,
                message: format!("the request body is not valid JSON for this route: {inner}"),
                param: None,
                code: "invalid_json",
            }
        } else {
            Self {
                status: StatusCode::BAD_REQUEST,
                message: format!("{path}: {inner}"),
                param: Some(path),
                code: "invalid_json",
            }
        }
    }

    /// The `type` OpenAI gives errors of this status.
    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            param: Option<&'a str>,
            code: &'static str,
        }
        serde_json::json!({
            "error": Inner {
                message: &self.message,
                kind: self.kind(),
                param: self.param.as_deref(),
                code: self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, code = self.code, "{}", self.message);
        }
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<MdsaError> for ApiError {
    fn from(error: MdsaError) -> Self {
        let message = error.to_string();
        let (status, code) = match &error {
            MdsaError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            MdsaError::WrongRole { .. } => (StatusCode::BAD_REQUEST, "wrong_model_role"),
            MdsaError::Domain(DomainError::UnknownDomain { .. }) => {
                (StatusCode::NOT_FOUND, "model_not_found")
            }
            MdsaError::Domain(DomainError::Timeout { .. }) => {
                (StatusCode::GATEWAY_TIMEOUT, "generation_timeout")
            }
            MdsaError::Domain(DomainError::Model(model)) => model_status(model),
            MdsaError::Manager(ManagerError::UnknownModel { .. }) => {
                (StatusCode::NOT_FOUND, "model_not_found")
            }
            MdsaError::Manager(ManagerError::DoesNotFit(_) | ManagerError::Timeout { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "no_memory_for_model")
            }
            MdsaError::Manager(ManagerError::InUse { .. }) => {
                (StatusCode::CONFLICT, "model_in_use")
            }
            // A remote engine that cannot be reached: the gateway's fault.
            MdsaError::Manager(ManagerError::Load { source, .. })
                if matches!(**source, ModelError::Backend(_)) =>
            {
                (StatusCode::BAD_GATEWAY, "backend_unavailable")
            }
            MdsaError::Manager(ManagerError::Load { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "model_load_failed")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
        Self::new(status, code, message)
    }
}

fn model_status(error: &ModelError) -> (StatusCode, &'static str) {
    match error {
        ModelError::ContextOverflow { .. } => (StatusCode::BAD_REQUEST, "context_length_exceeded"),
        ModelError::InvalidParams { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
        ModelError::Backend(_) => (StatusCode::BAD_GATEWAY, "backend_error"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "model_error"),
    }
}
