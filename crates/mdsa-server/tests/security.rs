//! Who may do what: loopback by default, bearer keys for the API and admin
//! routes, no CORS.

mod common;

use common::{TestServer, build_mdsa, send};
use mdsa::SystemConfig;
use mdsa_server::{ApiKeys, ServerConfig};

#[test]
fn the_default_address_is_loopback() {
    let config = ServerConfig::default();
    assert!(config.host.is_loopback(), "{}", config.host);
    assert!(config.keys.api.is_none() && config.keys.admin.is_none());
}

#[test]
fn keys_guard_the_api_and_the_admin_routes() {
    let server = TestServer::start(
        build_mdsa(SystemConfig::default()),
        ServerConfig {
            keys: ApiKeys {
                api: Some("api-secret".into()),
                admin: Some("admin-secret".into()),
            },
            ..ServerConfig::default()
        },
    );
    let call = |method: &str, path: &str, key: Option<&str>| {
        let header = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> = header
            .as_deref()
            .map(|h| vec![("authorization", h)])
            .unwrap_or_default();
        send(method, &server.url(path), &headers, None)
    };
    // Probes and the page stay open.
    assert_eq!(call("GET", "/health", None).status, 200);
    assert_eq!(call("GET", "/ready", None).status, 200);
    assert_eq!(call("GET", "/", None).status, 200);
    // The API and the metrics need the API key.
    for path in ["/v1/models", "/v1/stats", "/v1/logs", "/metrics"] {
        let missing = call("GET", path, None);
        assert_eq!(
            (missing.status, missing.error_code().as_str()),
            (401, "missing_api_key"),
            "{path}"
        );
        assert_eq!(missing.json()["error"]["type"], "authentication_error");
        let wrong = call("GET", path, Some("api-secreT"));
        assert_eq!(
            (wrong.status, wrong.error_code().as_str()),
            (401, "invalid_api_key"),
            "{path}"
        );
        assert_eq!(call("GET", path, Some("api-secret")).status, 200, "{path}");
    }
    let unauthorised_chat = send(
        "POST",
        &server.url("/v1/chat/completions"),
        &[("content-type", "application/json")],
        Some(r#"{"model":"auto","messages":[{"role":"user","content":"hi"}]}"#),
    );
    assert_eq!(unauthorised_chat.status, 401);
    // Admin routes take the admin key only.
    assert_eq!(call("GET", "/admin/models", Some("api-secret")).status, 401);
    assert_eq!(
        call("GET", "/admin/models", Some("admin-secret")).status,
        200
    );
    assert_eq!(
        call("POST", "/admin/models/smollm2/unload", None).status,
        401
    );
    assert_eq!(
        call("POST", "/admin/models/smollm2/unload", Some("admin-secret")).status,
        200
    );
}

#[test]
fn no_cross_origin_access_is_granted() {
    let server = TestServer::start(build_mdsa(SystemConfig::default()), ServerConfig::default());
    let origin = [("origin", "https://evil.example")];
    let get = send("GET", &server.url("/v1/models"), &origin, None);
    assert_eq!(get.status, 200);
    let preflight = send(
        "OPTIONS",
        &server.url("/v1/chat/completions"),
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        None,
    );
    assert_ne!(
        preflight.status, 200,
        "no preflight handler: {}",
        preflight.body
    );
    assert!(get.headers_lack("access-control-allow-origin"));
    assert!(preflight.headers_lack("access-control-allow-origin"));
}
