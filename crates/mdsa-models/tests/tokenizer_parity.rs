//! GGUF tokenizers against llama.cpp itself: every string of a committed
//! corpus (tests/fixtures/tokenizer_parity/corpus.json: several scripts,
//! digits, code, whitespace runs, emoji, special tokens in text, the empty
//! string) encoded and decoded by each tokenizer kind, compared with the ids
//! and text llama.cpp's `llama_tokenize`/`llama_detokenize` gave
//! (scripts/reference/gguf_tokenizer_parity.py, llama-cpp-python 0.3.36).
//!
//! Tokenizers: the tiny family fixtures (SentencePiece: llama2, mistral,
//! gemma2, gemma3, phi3; BPE: llama3 `llama-bpe`, qwen3 `qwen2`, phi4
//! `gpt-4o`), Mistral's real v1 and v3 SentencePiece vocabularies (from the
//! `mistral-common` wheel, converted by llama.cpp's converter with
//! `--vocab-only`), the phi3 vocabulary named as Phi-3 (llama.cpp's
//! whitespace stripping after special tokens), and the real SmolLM2 (`smollm`) file from the Hugging Face cache
//! (`cargo xtask fetch-models`); Qwen2.5-Coder (`qwen2`, ignored by default:
//! `cargo xtask fetch-models --all`, then `--ignored`).

use std::path::{Path, PathBuf};

use mdsa_engine::source::{ModelRef, ResolveOptions, ResolvedModel};
use mdsa_models::generate::IncrementalDecoder;
use mdsa_models::gguf::{GgufFile, GgufTokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    name: String,
    path: String,
    model: String,
    pre: Option<String>,
    vocab_size: usize,
    add_bos: bool,
    add_eos: bool,
    cases: Vec<Case>,
}

/// What llama.cpp gave for one corpus string.
#[derive(Deserialize)]
struct Case {
    /// `llama_tokenize(text, add_special = true, parse_special = true)`.
    ids: Vec<u32>,
    /// `llama_detokenize(ids, remove_special = true, unparse_special = false)`,
    /// or null when that is the input string.
    text: Option<Decoded>,
    /// `llama_tokenize(text, add_special = false, parse_special = false)`.
    plain: Option<Vec<u32>>,
    /// `llama_detokenize(ids, remove_special = false, unparse_special = true)`.
    shown: Option<Decoded>,
}

/// Decoded text, or its bytes when they are not UTF-8.
#[derive(Deserialize)]
#[serde(untagged)]
enum Decoded {
    Text(String),
    Bytes(Vec<u8>),
}

impl Decoded {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Bytes(b) => b,
        }
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer_parity")
}

fn corpus() -> Vec<String> {
    let json = std::fs::read_to_string(fixtures_dir().join("corpus.json")).expect("corpus.json");
    serde_json::from_str(&json).expect("corpus parses")
}

fn reference(name: &str) -> Reference {
    let path = fixtures_dir().join(format!("{name}.json"));
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The GGUF a reference was computed from: a path inside the crate, or a Hub
/// file in the local cache (`None` when it is not there). A family fixture's
/// GGUFs (f32, bf16, quantized) all embed the same tokenizer, so when the
/// recorded one is gone any `model.*.gguf` beside it serves.
fn gguf_path(reference: &Reference) -> Option<PathBuf> {
    match reference.path.strip_prefix("hub:") {
        None => {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(&reference.path);
            if path.exists() {
                return Some(path);
            }
            let mut siblings: Vec<PathBuf> = std::fs::read_dir(path.parent()?)
                .ok()?
                .filter_map(|entry| Some(entry.ok()?.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    name.starts_with("model.") && name.ends_with(".gguf")
                })
                .collect();
            siblings.sort();
            siblings.into_iter().next()
        }
        Some(hub) => {
            let model: ModelRef = hub.parse().expect("valid model reference");
            match model.resolve(&ResolveOptions::offline()) {
                Ok(ResolvedModel::Gguf { path }) => Some(path),
                _ => None,
            }
        }
    }
}

/// Compares every corpus string on every check; fails listing each difference.
fn check(name: &str) {
    let reference = reference(name);
    let corpus = corpus();
    assert_eq!(reference.name, name);
    assert_eq!(
        reference.cases.len(),
        corpus.len(),
        "{name}: corpus changed"
    );
    let path = gguf_path(&reference)
        .unwrap_or_else(|| panic!("{name}: {} is not available", reference.path));
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let (tokenizer, info) = file.gguf_tokenizer().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.model, reference.model, "{name}");
    assert_eq!(info.pre, reference.pre, "{name}");
    assert_eq!(tokenizer.vocab_size(), reference.vocab_size, "{name}");
    assert_eq!(tokenizer.add_bos(), reference.add_bos, "{name}: add_bos");
    assert_eq!(tokenizer.add_eos(), reference.add_eos, "{name}: add_eos");
    assert_eq!(
        info.add_bos_token, reference.add_bos,
        "{name}: info.add_bos_token"
    );
    let (text_tokenizer, _) = file.text_tokenizer().unwrap_or_else(|e| panic!("{e}"));

    let mut report = String::new();
    let mut identical = 0;
    for (text, case) in corpus.iter().zip(&reference.cases) {
        let problems = differences(&tokenizer, &text_tokenizer, text, case);
        if problems.is_empty() {
            identical += 1;
        }
        for problem in problems {
            report.push_str(&format!("\n{text:?}: {problem}"));
        }
    }
    // Every word is in the tokenizer's word cache now: a second pass reads
    // it, and must give llama.cpp's ids all the same.
    for (text, case) in corpus.iter().zip(&reference.cases) {
        let ids = tokenizer.encode(text, true, true);
        if ids != case.ids {
            report.push_str(&format!(
                "\n{text:?}: again {ids:?}, llama.cpp {:?}",
                case.ids
            ));
        }
    }
    assert!(
        report.is_empty(),
        "{name} ({} {:?}): {identical} of {} strings identical to llama.cpp:{report}",
        reference.model,
        reference.pre,
        corpus.len()
    );
}

fn differences(
    tokenizer: &GgufTokenizer,
    text_tokenizer: &mdsa_models::tokenizer::TextTokenizer,
    text: &str,
    case: &Case,
) -> Vec<String> {
    let mut problems = Vec::new();
    let ids = tokenizer.encode(text, true, true);
    if ids != case.ids {
        problems.push(format!("ids {ids:?}, llama.cpp {:?}", case.ids));
    }
    // The same through TextTokenizer: encode adds BOS/EOS, encode_plain does not.
    let batch = text_tokenizer.encode(text).expect("encodes");
    if batch != case.ids {
        problems.push(format!(
            "TextTokenizer::encode {batch:?}, llama.cpp {:?}",
            case.ids
        ));
    }
    let plain = text_tokenizer.encode_plain(text).expect("encodes");
    if plain != tokenizer.encode(text, false, true) {
        problems.push(format!("TextTokenizer::encode_plain {plain:?}"));
    }
    if let Some(expected) = &case.plain {
        let got = tokenizer.encode(text, false, false);
        if &got != expected {
            problems.push(format!(
                "without special parsing {got:?}, llama.cpp {expected:?}"
            ));
        }
    }
    let decoded = tokenizer
        .detokenize(&case.ids, true, false)
        .expect("ids are in the vocabulary");
    let expected = case.text.as_ref().map_or(text.as_bytes(), Decoded::bytes);
    if decoded != expected {
        problems.push(format!(
            "decoded {:?}, llama.cpp {:?}",
            String::from_utf8_lossy(&decoded),
            String::from_utf8_lossy(expected)
        ));
    }
    // TextTokenizer decodes as llama.cpp but never tidies spaces (the pieces
    // as llama.cpp's server streams them): for vocabularies that do not tidy,
    // that is exactly llama.cpp's text (for those that do, `detokenize` above
    // checked the tidied text).
    let lossy = text_tokenizer.decode(&case.ids, true).expect("decodes");
    let untidied = tokenizer
        .decode_untidied(&case.ids, true, false)
        .expect("decodes");
    if lossy != untidied {
        problems.push(format!(
            "TextTokenizer::decode {lossy:?}, untidied {untidied:?}"
        ));
    }
    if !tokenizer.cleans_spaces() && untidied != String::from_utf8_lossy(expected) {
        problems.push(format!("untidied {untidied:?}"));
    }
    // Streaming: the pieces the incremental decoder emits add up to the whole.
    let mut stream = IncrementalDecoder::new();
    let mut streamed = String::new();
    for &id in &case.ids {
        streamed.extend(stream.push(text_tokenizer, id).expect("decodes"));
    }
    if streamed != lossy {
        problems.push(format!("streamed {streamed:?}, decoded {lossy:?}"));
    }
    if let Some(shown) = &case.shown {
        let got = tokenizer
            .detokenize(&case.ids, false, true)
            .expect("decodes");
        if got != shown.bytes() {
            problems.push(format!(
                "decoded with special tokens {:?}, llama.cpp {:?}",
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(shown.bytes())
            ));
        }
    }
    problems
}

#[test]
fn llama2_spm_matches_llama_cpp() {
    check("llama2");
}

#[test]
fn mistral_spm_matches_llama_cpp() {
    check("mistral");
}

#[test]
fn gemma2_spm_matches_llama_cpp() {
    check("gemma2");
}

#[test]
fn gemma3_spm_matches_llama_cpp() {
    check("gemma3");
}

#[test]
fn phi3_spm_matches_llama_cpp() {
    check("phi3");
}

#[test]
fn mistral_v1_real_spm_matches_llama_cpp() {
    check("mistral_v1");
}

#[test]
fn mistral_v3_real_spm_matches_llama_cpp() {
    check("mistral_v3");
}

/// The phi3 fixture's vocabulary under the name "Phi-3 mini": llama.cpp then
/// drops the whitespace after special tokens.
#[test]
fn phi3_named_spm_strips_after_special_tokens_as_llama_cpp() {
    check("phi3_named");
}

#[test]
fn llama3_bpe_matches_llama_cpp() {
    check("llama3");
}

#[test]
fn qwen3_bpe_matches_llama_cpp() {
    check("qwen3");
}

#[test]
fn phi4_bpe_matches_llama_cpp() {
    check("phi4");
}

#[test]
fn smollm2_bpe_matches_llama_cpp() {
    check("smollm2");
}

#[test]
#[ignore = "needs the optional Qwen2.5-Coder GGUF: cargo xtask fetch-models --all"]
fn qwen2_5_coder_bpe_matches_llama_cpp() {
    check("qwen2_5_coder");
}
