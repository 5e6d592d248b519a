//! Bearer keys: one for the API, and one for the admin routes.
//!
//! Without keys the server trusts whoever can reach it, which is why it binds
//! loopback by default. `/health`, `/ready` and the dashboard's static files
//! stay open (load balancers probe them; the page holds no data: it asks for
//! the key when the API refuses it).

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::state::AppState;

/// The keys a server checks.
#[derive(Clone, Default)]
pub struct ApiKeys {
    /// Needed for the API (`/v1/...`, `/metrics`); `None`: open.
    pub api: Option<String>,
    /// Needed for `/admin/...`; `None`: the API key (if any) is enough.
    pub admin: Option<String>,
}

impl std::fmt::Debug for ApiKeys {
    // Keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("api", &self.api.as_ref().map(|_| "<set>"))
            .field("admin", &self.admin.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl ApiKeys {
    /// The key an admin route needs: the admin key, else the API key.
    fn admin_key(&self) -> Option<&str> {
        self.admin.as_deref().or(self.api.as_deref())
    }
}

/// Middleware for the API routes.
pub(crate) async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check(state.keys().api.as_deref(), &request, "API")?;
    Ok(next.run(request).await)
}

/// Middleware for the admin routes.
pub(crate) async fn require_admin_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check(state.keys().admin_key(), &request, "admin")?;
    Ok(next.run(request).await)
}

fn check(expected: Option<&str>, request: &Request, scope: &str) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same(given.trim().as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            format!("the {scope} key in the Authorization header is not the server's"),
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            format!("this server needs the {scope} key: send `Authorization: Bearer <key>`"),
        )),
    }
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell an attacker how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn comparison_is_exact() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
