//! Both BERT encoder paths (the fused CPU one and burn's) against
//! sentence-transformers on the real all-MiniLM-L6-v2 weights (fixture:
//! scripts/reference/minilm_embeddings.py).
//!
//! The model comes from the Hugging Face cache that `cargo xtask fetch-models`
//! fills; `cargo xtask ci` runs that first.

// Tests and benches report the figures they measure.
#![allow(clippy::print_stderr)]

use std::sync::OnceLock;

use mdsa_engine::{Embedder, source::ModelRef, source::ResolveOptions};
use mdsa_models::{BertEmbedder, EmbedderOptions, EncoderPath, Pooling};
use serde::Deserialize;

const MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

#[derive(Deserialize)]
struct Fixture {
    max_seq_length: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    token_ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let text = include_str!("fixtures/minilm_embeddings.json");
        serde_json::from_str(text).expect("fixture parses")
    })
}

fn load(path: EncoderPath) -> BertEmbedder {
    let model: ModelRef = MODEL.parse().expect("valid hub id");
    let options = EmbedderOptions {
        path,
        ..EmbedderOptions::default()
    };
    BertEmbedder::load(&model, &ResolveOptions::offline(), &options)
        .unwrap_or_else(|e| panic!("{e}\n(run `cargo xtask fetch-models` first)"))
}

/// The default embedder: the fused path on this CPU.
fn embedder() -> &'static BertEmbedder {
    static EMBEDDER: OnceLock<BertEmbedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| load(EncoderPath::Auto))
}

fn burn_embedder() -> &'static BertEmbedder {
    static EMBEDDER: OnceLock<BertEmbedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| load(EncoderPath::Burn))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_matches_reference(got: &[Vec<f32>]) {
    let cases = &fixture().cases;
    assert_eq!(got.len(), cases.len());
    let mut worst = (1.0f64, 0.0f32);
    for (case, embedding) in cases.iter().zip(got) {
        assert_eq!(embedding.len(), case.embedding.len(), "{:?}", case.text);
        let cos = mdsa_engine::cosine_similarity(embedding, &case.embedding);
        let diff = max_abs_diff(embedding, &case.embedding);
        assert!(
            cos >= 0.99999 && diff <= 1e-4,
            "{:?}: cosine {cos:.7}, max abs diff {diff:.2e}",
            case.text
        );
        worst = (worst.0.min(cos), worst.1.max(diff));
    }
    eprintln!(
        "worst cosine {:.7}, worst max abs diff {:.2e}",
        worst.0, worst.1
    );
}

#[test]
fn the_model_config_is_read_as_sentence_transformers_does() {
    let embedder = embedder();
    assert_eq!(embedder.dimension(), 384);
    assert_eq!(embedder.pooling(), Pooling::Mean);
    assert!(embedder.normalizes());
    assert_eq!(fixture().max_seq_length, 256);
}

#[test]
fn token_ids_equal_the_reference_tokenizer() {
    let tokenizer = embedder().tokenizer();
    for case in &fixture().cases {
        let ids = tokenizer.encode(&case.text).unwrap();
        assert_eq!(ids, case.token_ids, "{:?}", case.text);
    }
    // One case is longer than the tokenizer file's own 128-token truncation and one
    // is cut at max_seq_length: both must follow sentence-transformers.
    assert!(
        fixture()
            .cases
            .iter()
            .any(|c| c.token_ids.len() > 128 && c.token_ids.len() < 256)
    );
    assert!(fixture().cases.iter().any(|c| c.token_ids.len() == 256));
}

#[test]
fn the_cpu_runs_the_fused_path_unless_told_otherwise() {
    assert_eq!(embedder().path(), EncoderPath::Host);
    assert_eq!(burn_embedder().path(), EncoderPath::Burn);
}

#[test]
fn one_batch_with_padding_matches_the_reference() {
    let texts: Vec<&str> = fixture().cases.iter().map(|c| c.text.as_str()).collect();
    assert_matches_reference(&embedder().embed(&texts).unwrap());
    assert_matches_reference(&burn_embedder().embed(&texts).unwrap());
}

#[test]
fn one_query_at_a_time_matches_the_reference() {
    for embedder in [embedder(), burn_embedder()] {
        let got: Vec<Vec<f32>> = fixture()
            .cases
            .iter()
            .map(|c| embedder.embed(&[c.text.as_str()]).unwrap().remove(0))
            .collect();
        assert_matches_reference(&got);
    }
}

#[test]
fn embeddings_are_unit_length_and_empty_input_is_empty() {
    for embedding in embedder()
        .embed(&["short", "a somewhat longer sentence"])
        .unwrap()
    {
        let norm: f32 = embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    assert!(embedder().embed(&[]).unwrap().is_empty());
    // An empty string is still a valid input ([CLS] [SEP]).
    assert_eq!(embedder().embed(&[""]).unwrap()[0].len(), 384);
}

#[test]
fn many_threads_share_one_embedder() {
    let texts = ["I have a fever", "reset my password", "buy index funds"];
    let expected = embedder().embed(&texts).unwrap();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| embedder().embed(&texts).unwrap()))
            .collect();
        for handle in handles {
            let got = handle.join().unwrap();
            for (g, e) in got.iter().zip(&expected) {
                assert!(max_abs_diff(g, e) < 1e-5);
            }
        }
    });
}
