//! `mdsa generate` on the fetched SmolLM2 GGUF.

mod common;
use common::mdsa;

#[test]
fn generate_streams_text_and_reports_stats() {
    let output = mdsa(&[
        "generate",
        "--chat",
        "--dtype",
        "f32",
        "--max-tokens",
        "24",
        "--stats",
        "What is the capital of France?",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("Paris"), "{text}");
    let stats = String::from_utf8(output.stderr).unwrap();
    for field in [
        "prompt 37 tokens",
        "time to first token",
        "decode",
        "resident",
    ] {
        assert!(stats.contains(field), "missing {field:?} in {stats}");
    }
}

#[test]
fn generate_rejects_bad_options_with_one_line() {
    let output = mdsa(&["generate", "--dtype", "int3", "hi"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("int3") && stderr.contains("expected"),
        "{stderr}"
    );
    let output = mdsa(&["generate", "--temperature=-1", "--max-tokens", "2", "hi"]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("temperature"), "{stderr}");
    let output = mdsa(&[
        "generate",
        "--model",
        "sentence-transformers/all-MiniLM-L6-v2",
        "hi",
    ]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("unsupported architecture \"bert\""),
        "{stderr}"
    );
}
