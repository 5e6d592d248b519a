//! `mdsa hw` run as a user runs it.

mod common;
use common::mdsa;

#[test]
fn hw_json_is_one_object_with_the_profile_and_budget() {
    let output = mdsa(&["hw", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    let profile = &value["profile"];
    assert!(profile["cpu"]["logical_cores"].as_u64().unwrap() >= 1);
    assert!(profile["cpu"]["simd"].is_object());
    assert!(profile["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(profile["gpus"].is_array());
    let total = profile["memory"]["available_bytes"].as_u64().unwrap();
    let budget = value["budget"]["cpu_bytes"].as_u64().unwrap();
    assert!(budget > 0 && budget < total, "budget {budget} of {total}");
}

#[test]
fn hw_table_names_every_row() {
    let output = mdsa(&["hw"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for row in [
        "CPU",
        "cores",
        "SIMD",
        "RAM total",
        "RAM available",
        "process RSS",
        "GPUs",
    ] {
        assert!(text.contains(row), "missing {row:?} in\n{text}");
    }
}

#[test]
fn version_and_unknown_commands() {
    let output = mdsa(&["--version"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
    let output = mdsa(&["no-such-command"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-command"));
}
