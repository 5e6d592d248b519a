//! The dashboard at `/`: one HTML page, its scripts (the page and its small
//! canvas charts) and styles, compiled into the binary (no build step, nothing
//! fetched at run time). The page names the version (`{{version}}` in the
//! HTML) before any script runs.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const CHARTS_JS: &str = include_str!("../../dashboard/charts.js");
const APP_CSS: &str = include_str!("../../dashboard/app.css");

/// The page with this build's version written in.
static INDEX: LazyLock<String> = LazyLock::new(|| index_html(mdsa::VERSION));

/// The dashboard page naming `version`.
fn index_html(version: &str) -> String {
    INDEX_HTML.replace("{{version}}", version)
}

/// The dashboard's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX.as_str()) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/charts.js",
            get(|| async { asset("text/javascript; charset=utf-8", CHARTS_JS) }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_version_and_nothing_is_left_to_fill() {
        let page = index_html("1.2.3");
        assert!(
            page.contains("<title>mdsa 1.2.3 · dashboard</title>"),
            "{page}"
        );
        assert!(page.contains(">v1.2.3</span>"));
        assert!(!page.contains("{{"), "an unfilled placeholder");
    }
}
