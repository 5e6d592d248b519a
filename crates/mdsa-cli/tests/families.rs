//! `mdsa generate` on a model of every decoder family, from both formats: the
//! tiny reference models of `crates/mdsa-models/tests/fixtures/families`
//! (made by `scripts/reference/families.py`). Each answers a chat prompt that
//! its own template renders to as many tokens as transformers counted.

mod common;
use common::mdsa;

use std::path::{Path, PathBuf};

fn families() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mdsa-models/tests/fixtures/families")
}

/// The token count of the rendered chat prompt of `fixture`: transformers'
/// for the Hugging Face folder, llama.cpp's for a GGUF file (its
/// SentencePiece tokenizer puts a space after special tokens).
fn chat_prompt_tokens(fixture: &Path, gguf: bool) -> usize {
    let text = std::fs::read_to_string(fixture.join("reference.json")).expect("reference.json");
    let reference: serde_json::Value = serde_json::from_str(&text).expect("json");
    if gguf {
        return reference["gguf_chat"]["ids"]
            .as_array()
            .expect("gguf_chat ids")
            .len();
    }
    let rendered = reference["chat_sample"]["rendered"]
        .as_str()
        .expect("rendered");
    reference["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .find(|p| p["kind"] == "chat" && p["text"] == rendered)
        .and_then(|p| p["ids"].as_array())
        .expect("the chat prompt's ids")
        .len()
}

/// The model files of a fixture: its Hugging Face folder and its unquantized GGUF.
fn model_files(fixture: &Path) -> Vec<PathBuf> {
    let mut files = vec![fixture.join("hf")];
    files.extend(
        ["model.f32.gguf", "model.bf16.gguf", "model.f16.gguf"]
            .iter()
            .map(|f| fixture.join(f))
            .filter(|p| p.exists()),
    );
    files
}

#[test]
fn every_family_answers_a_chat_prompt_from_both_formats() {
    let mut checked = 0;
    for name in [
        "llama2", "llama3", "mistral", "qwen3", "gemma2", "gemma3", "phi3", "phi4",
    ] {
        let fixture = families().join(name);
        for model in model_files(&fixture) {
            let tokens =
                chat_prompt_tokens(&fixture, model.extension().is_some_and(|e| e == "gguf"));
            let model = model.to_str().expect("utf-8 path");
            let output = mdsa(&[
                "generate",
                "--model",
                model,
                "--chat",
                "--dtype",
                "f32",
                "--max-tokens",
                "6",
                "--stats",
                "What is the capital of France?",
            ]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{model}: {stderr}");
            assert!(
                stderr.contains(&format!("prompt {tokens} tokens")),
                "{model}: expected a {tokens}-token prompt: {stderr}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "{checked} models checked");
}
