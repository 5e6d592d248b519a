//! `mdsa embed` on the real router encoder (fetched by `cargo xtask fetch-models`).

mod common;
use common::mdsa;

#[test]
fn embed_json_gives_one_unit_vector_per_text() {
    let output = mdsa(&["embed", "--json", "I have a fever", "reset my password"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(value["model"], "sentence-transformers/all-MiniLM-L6-v2");
    let embeddings = value["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 2);
    for embedding in embeddings {
        let values: Vec<f64> = embedding
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(values.len(), 384);
        let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

#[test]
fn embed_plain_prints_a_line_per_text() {
    let output = mdsa(&["embed", "one", "two words"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let (label, values) = lines[1].split_once('\t').unwrap();
    assert_eq!(label, "two words");
    assert_eq!(values.split(' ').count(), 384);
}

#[test]
fn a_missing_model_is_one_clear_line() {
    let output = mdsa(&["embed", "--model", "./no/such/dir", "text"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("no/such/dir"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let output = mdsa(&["embed", "--model", "nobody/not-cached", "text"]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("nobody/not-cached") && stderr.contains("mdsa pull nobody/not-cached"),
        "{stderr}"
    );
}
