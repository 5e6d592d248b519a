//! `mdsa serve` answering through a domain bound to a model of every decoder
//! family, from both formats: each domain's `model` is one of the tiny
//! reference models of `crates/mdsa-models/tests/fixtures/families`, and a
//! chat completion forced to that domain is answered by it.

mod common;

use std::path::{Path, PathBuf};

use common::{TestServer, chat, post_json};
use mdsa::domains::{DomainConfig, ValidationRules};
use mdsa::{Mdsa, SystemConfig};
use mdsa_server::ServerConfig;

const FAMILIES: [&str; 8] = [
    "llama2", "llama3", "mistral", "qwen3", "gemma2", "gemma3", "phi3", "phi4",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mdsa-models/tests/fixtures/families")
        .join(name)
}

/// The unquantized GGUF of a fixture.
fn gguf(name: &str) -> PathBuf {
    ["model.f32.gguf", "model.bf16.gguf", "model.f16.gguf"]
        .iter()
        .map(|f| fixture(name).join(f))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} has no unquantized GGUF"))
}

/// A domain answered by `model`; a 4-token answer may be empty (the tiny
/// models may end their turn at once), which is not rejected.
fn domain(id: &str, model: &Path) -> DomainConfig {
    DomainConfig::new(id, format!("Questions for the {id} test model"))
        .examples([format!("a question for {id}")])
        .model(model.to_str().expect("utf-8 path"))
        // Gemma's template has no system role: the prompt is folded into the
        // user turn rather than failing.
        .system_prompt("Answer in one short sentence.")
        .validation(ValidationRules {
            min_chars: 0,
            ..ValidationRules::default()
        })
}

fn system() -> Mdsa {
    let mut builder = Mdsa::builder().config(SystemConfig::default());
    for name in FAMILIES {
        builder = builder
            .domain(domain(&format!("{name}-hf"), &fixture(name).join("hf")))
            .domain(domain(&format!("{name}-gguf"), &gguf(name)));
    }
    builder
        .build()
        .expect("mdsa builds (run `cargo xtask fetch-models`)")
}

#[test]
fn a_domain_on_every_family_answers_through_the_server() {
    let server = TestServer::start(system(), ServerConfig::default());
    for name in FAMILIES {
        for format in ["hf", "gguf"] {
            let id = format!("{name}-{format}");
            let reply = post_json(
                &server.url("/v1/chat/completions"),
                &chat(&id, "What is the capital of France?", 4),
            );
            assert_eq!(reply.status, 200, "{id}: {}", reply.body);
            let body = reply.json();
            assert_eq!(body["mdsa"]["domain"], id.as_str(), "{body}");
            assert_eq!(body["choices"][0]["message"]["role"], "assistant", "{body}");
            let tokens = body["usage"]["completion_tokens"].as_u64().unwrap_or(0);
            assert!((1..=4).contains(&tokens), "{id}: {body}");
        }
    }
    server.shutdown();
}
