//! Checks on the deployment documentation: the Grafana dashboard is a
//! dashboard Grafana can import, and every `mdsa_` metric that it, the alert
//! rules and `docs/deploy.md` name is one `mdsa serve` really prints
//! (`docs/grafana/metrics.txt`, read from a live `/metrics`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::cmd::workspace_root;

const DASHBOARD: &str = "docs/grafana/mdsa-dashboard.json";
const KNOWN: &str = "docs/grafana/metrics.txt";
const DATASOURCE: &str = "${DS_PROMETHEUS}";

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// The series names `/metrics` prints.
fn known_metrics() -> BTreeSet<String> {
    read(KNOWN)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Every `mdsa_...` name in `text`, except crate paths and log targets
/// (`mdsa_server::`, `mdsa_server=debug`) and prefixes (`mdsa_`, `mdsa_model_`).
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut names = BTreeSet::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("mdsa_") {
        let start = from + found;
        let mut end = start;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        from = end;
        if start > 0 && word(bytes[start - 1]) {
            continue;
        }
        let rest = &text[end..];
        if rest.starts_with("::") || rest.starts_with('=') || bytes[end - 1] == b'_' {
            continue;
        }
        names.insert(text[start..end].to_string());
    }
    names
}

/// A name the server prints, or a histogram family whose buckets it prints.
fn is_known(name: &str, known: &BTreeSet<String>) -> bool {
    known.contains(name) || known.contains(&format!("{name}_bucket"))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every PromQL expression: the panels' targets and the variables' queries.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                exprs.push((title.to_string(), expr.to_string()));
            }
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = variable["name"].as_str().unwrap_or("?");
        for query in [&variable["query"]["query"], &variable["definition"]] {
            if let Some(q) = query.as_str() {
                exprs.push((format!("${name}"), q.to_string()));
            }
        }
    }
    exprs
}

fn unknown_names(text: &str, known: &BTreeSet<String>) -> Vec<String> {
    metric_names(text)
        .into_iter()
        .filter(|n| !is_known(n, known))
        .collect()
}

#[test]
fn dashboard_queries_name_only_metrics_the_server_prints() {
    let known = known_metrics();
    assert!(known.contains("mdsa_requests_total"), "{KNOWN} looks empty");
    let dashboard = dashboard();
    let exprs = expressions(&dashboard);
    assert!(exprs.len() >= 20, "only {} expressions", exprs.len());
    let mut used = BTreeSet::new();
    for (panel, expr) in &exprs {
        for name in metric_names(expr) {
            assert!(
                known.contains(&name),
                "panel {panel:?}: {name} is not printed by /metrics ({KNOWN}); expr: {expr}"
            );
            used.insert(name);
        }
    }
    // What the dashboard is for: each of these has a panel.
    for name in [
        "mdsa_requests_total",
        "mdsa_request_duration_seconds_bucket",
        "mdsa_time_to_first_token_seconds_bucket",
        "mdsa_tokens_in_total",
        "mdsa_tokens_out_total",
        "mdsa_routing_confidence_bucket",
        "mdsa_model_loads_total",
        "mdsa_model_evictions_total",
        "mdsa_model_resident_bytes",
        "mdsa_queue_depth",
        "mdsa_inflight_requests",
        "mdsa_rejected_requests_total",
    ] {
        assert!(used.contains(name), "no panel queries {name}");
    }
}

#[test]
fn dashboard_is_importable_with_a_prometheus_input() {
    let dashboard = dashboard();
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS input: {inputs:?}"
    );
    assert!(dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 36);
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    let mut ids = BTreeMap::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: no id"));
        assert!(
            ids.insert(id, title).is_none(),
            "panel id {id} repeats ({title})"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{title}: {grid}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], DATASOURCE, "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no queries");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], DATASOURCE, "{title}");
            assert!(target["refId"].as_str().is_some(), "{title}: no refId");
        }
    }
}

#[test]
fn alerts_and_deploy_doc_name_only_known_metrics() {
    let known = known_metrics();
    for path in [
        "docs/prometheus/alerts.yml",
        "docs/prometheus/prometheus.yml",
        "docs/deploy.md",
    ] {
        let text = read(path);
        let unknown = unknown_names(&text, &known);
        assert!(
            unknown.is_empty(),
            "{path} names unknown metrics: {unknown:?}"
        );
    }
    assert!(metric_names(&read("docs/prometheus/alerts.yml")).len() >= 5);
    assert!(Path::new(&workspace_root().join("docs/deploy.md")).exists());
}

#[test]
fn metric_names_are_found_whole() {
    let names = metric_names(
        "sum(rate(mdsa_requests_total{x=\"y\"}[5m])) / xmdsa_not_this + mdsa_queue_depth \
         RUST_LOG=mdsa_server=debug mdsa_monitor::Metrics, every `mdsa_` or mdsa_model_* name",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["mdsa_queue_depth", "mdsa_requests_total"]
    );
    let known: BTreeSet<String> = ["mdsa_request_duration_seconds_bucket".to_string()].into();
    assert!(is_known("mdsa_request_duration_seconds", &known));
    assert!(!is_known("mdsa_request_duration", &known));
}
