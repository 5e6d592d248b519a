//! Checks that keep the documentation honest (run by `cargo test -p xtask`).
//!
//! - Deployment: the Grafana dashboard is a dashboard Grafana can import, and
//!   every `mdsa_` metric that it, the alert rules, `docs/deploy.md` and
//!   `docs/guide.md` name is one `mdsa serve` really prints
//!   (`docs/grafana/metrics.txt`, read from a live `/metrics`).
//! - Every page: relative links and their `#anchors` resolve, and every
//!   `cargo xtask TASK` named is a task.
//! - The guide: the server errors it quotes carry codes and messages the source
//!   writes. (The CLI errors it quotes are checked against the binary itself by
//!   `crates/mdsa-cli/tests/guide.rs`.)

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
        "docs/guide.md",
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

/// The pages whose links and task names are checked.
const PAGES: &[&str] = &[
    "README.md",
    "docs/guide.md",
    "docs/deploy.md",
    "docs/models.md",
    "docs/domains.md",
    "docs/architecture.md",
    "docs/python.md",
];

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The anchors of a markdown page's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of `[text](target)` links.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_string());
        }
    }
    out
}

#[test]
fn relative_links_and_anchors_resolve() {
    let root = workspace_root();
    let mut pages: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let readme = entry.unwrap().path().join("README.md");
        if readme.exists() {
            pages.push(readme.strip_prefix(&root).unwrap().display().to_string());
        }
    }
    let mut checked = 0;
    for page in &pages {
        let text = read(page);
        let dir = Path::new(page).parent().unwrap_or(Path::new(""));
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                Path::new(page).to_path_buf()
            } else {
                dir.join(path)
            };
            let full = root.join(&target);
            assert!(
                full.exists(),
                "{page}: link {link:?}: {} does not exist",
                target.display()
            );
            if !fragment.is_empty() {
                let headings = anchors(&std::fs::read_to_string(&full).unwrap());
                assert!(
                    headings.contains(fragment),
                    "{page}: link {link:?}: no heading #{fragment} in {}",
                    target.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} links checked");
}

#[test]
fn every_xtask_task_named_exists() {
    let mut command = <crate::Cli as clap::CommandFactory>::command();
    command.build();
    let tasks: BTreeSet<String> = command
        .get_subcommands()
        .map(|task| task.get_name().to_owned())
        .collect();
    assert!(tasks.contains("dist") && tasks.contains("ci"), "{tasks:?}");
    for page in PAGES {
        let text = read(page);
        for (at, _) in text.match_indices("cargo xtask ") {
            let task: String = text[at + "cargo xtask ".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            assert!(
                task.is_empty() || tasks.contains(&task),
                "{page} names `cargo xtask {task}`, which is not a task"
            );
        }
    }
}

/// Every Rust source file of the crates, concatenated.
fn crate_sources() -> String {
    fn visit(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = String::new();
    visit(&workspace_root().join("crates"), &mut out);
    out
}

/// Whether the string literal on a source line (between its first and last `"`,
/// `{...}` standing for any text) can produce `message`.
fn formats(line: &str, message: &str) -> bool {
    let (Some(first), Some(last)) = (line.find('"'), line.rfind('"')) else {
        return false;
    };
    if last <= first + 1 {
        return false;
    }
    let literal = line[first + 1..last].replace("\\\"", "\"");
    let mut parts = Vec::new();
    let mut rest = literal.as_str();
    while let Some(open) = rest.find('{') {
        parts.push(&rest[..open]);
        rest = rest[open..]
            .find('}')
            .map_or("", |close| &rest[open + close + 1..]);
    }
    parts.push(rest);
    if parts.iter().map(|p| p.len()).sum::<usize>() < 12 {
        return false;
    }
    let (head, tail) = (parts[0], parts[parts.len() - 1]);
    let Some(mut remaining) = message.strip_prefix(head) else {
        return false;
    };
    if parts.len() == 1 {
        return remaining.is_empty();
    }
    for part in &parts[1..parts.len() - 1] {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.ends_with(tail)
}

#[test]
fn server_errors_quoted_in_the_guide_come_from_the_source() {
    let guide = read("docs/guide.md");
    let source = crate_sources();
    let mut quoted = 0;
    for line in guide.lines() {
        let Some(start) = line.find("{\"error\"") else {
            continue;
        };
        let json = line[start..].trim_end_matches(['`', '.']);
        let value: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
        let code = value["error"]["code"].as_str().expect("a code");
        assert!(
            source.contains(&format!("\"{code}\"")),
            "no error code {code:?} in the source"
        );
        let message = value["error"]["message"].as_str().expect("a message");
        assert!(
            source.lines().any(|line| formats(line, message)),
            "the guide quotes {message:?}, but no string in the source writes it"
        );
        quoted += 1;
    }
    assert!(quoted >= 4, "only {quoted} quoted server errors");
}

#[test]
fn anchors_and_links_are_read_as_github_does() {
    assert_eq!(
        anchor(" Large models on vLLM (the `openai` backend)"),
        "large-models-on-vllm-the-openai-backend"
    );
    assert_eq!(
        anchor(" 2. Choose and fetch models"),
        "2-choose-and-fetch-models"
    );
    assert_eq!(
        links("see [a](docs/a.md#x) and [b](https://e.org) [c](#y)"),
        ["docs/a.md#x", "https://e.org", "#y"]
    );
    let line = r#"            format!("the {scope} key in the Authorization header is not the server's"),"#;
    assert!(formats(
        line,
        "the API key in the Authorization header is not the server's"
    ));
    assert!(!formats(
        line,
        "the API key in the header is not the server's"
    ));
    assert!(formats(
        r#"bail!("plain \"text\" here")"#,
        "plain \"text\" here"
    ));
    let text = "# One\n```\n# not a heading\n```\n## Two words\n";
    assert_eq!(anchors(text), ["one", "two-words"].map(String::from).into());
}
