//! Every supported BERT family, pooling mode and prompt against
//! sentence-transformers, on tiny random-weight models made by
//! scripts/reference/encoder_families.py: BERT (mean pooling, an E5-style
//! prompt by name), RoBERTa (CLS pooling, positions past the padding id,
//! byte-level BPE), XLM-RoBERTa (max pooling, a default prompt, Unigram,
//! several scripts) and DistilBERT (its own tensor names, last-token pooling).
//! Both encoder paths, one text at a time and batched.

use std::path::{Path, PathBuf};

use mdsa_engine::Embedder;
use mdsa_models::{BertEmbedder, EmbedderOptions, EncoderPath, Pooling};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    kinds: std::collections::BTreeMap<String, Kind>,
}

#[derive(Deserialize)]
struct Kind {
    pooling: String,
    normalize: bool,
    prompt_name: Option<String>,
    prompt: String,
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encoders")
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).expect("fixture");
    serde_json::from_str(&text).expect("fixture parses")
}

fn load(name: &str, kind: &Kind, path: EncoderPath) -> BertEmbedder {
    let options = EmbedderOptions {
        path,
        prompt_name: kind.prompt_name.clone(),
        ..EmbedderOptions::default()
    };
    BertEmbedder::from_dir(&fixtures().join(name), &options)
        .unwrap_or_else(|e| panic!("{name} ({path:?}): {e}"))
}

#[test]
fn every_family_matches_sentence_transformers_on_both_paths() {
    let reference = reference();
    assert_eq!(reference.kinds.len(), 4);
    for (name, kind) in &reference.kinds {
        for path in [EncoderPath::Host, EncoderPath::Burn] {
            let embedder = load(name, kind, path);
            let expected_pooling = match kind.pooling.as_str() {
                "mean" => Pooling::Mean,
                "cls" => Pooling::Cls,
                "max" => Pooling::Max,
                "lasttoken" => Pooling::LastToken,
                other => panic!("unknown pooling {other}"),
            };
            assert_eq!(embedder.pooling(), expected_pooling, "{name}");
            assert_eq!(embedder.normalizes(), kind.normalize, "{name}");
            assert_eq!(embedder.prompt(), kind.prompt, "{name}");
            let texts: Vec<&str> = kind.sentences.iter().map(|s| s.text.as_str()).collect();
            let batched = embedder.embed(&texts).unwrap();
            for (sentence, batch_vector) in kind.sentences.iter().zip(&batched) {
                let prompted = format!("{}{}", kind.prompt, sentence.text);
                let ids = embedder.tokenizer().encode_batch(&[&prompted]).unwrap().ids;
                assert_eq!(ids, sentence.ids, "{name}: {:?}", sentence.text);
                assert!(ids.len() <= reference.max_seq_length);
                let single = embedder.embed(&[&sentence.text]).unwrap().remove(0);
                for (how, got) in [("alone", &single), ("batched", batch_vector)] {
                    let cos = mdsa_engine::cosine_similarity(got, &sentence.embedding);
                    assert!(
                        cos >= 0.99999,
                        "{name} {path:?} {how}: {:?} cosine {cos:.7}",
                        sentence.text
                    );
                }
                if !kind.normalize {
                    // Unnormalised vectors must match in length too.
                    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    let (got, want) = (norm(&single), norm(&sentence.embedding));
                    assert!(
                        (got - want).abs() <= 1e-4 * want,
                        "{name}: norm {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_unknown_prompt_name_lists_the_known_ones() {
    let options = EmbedderOptions {
        prompt_name: Some("passage".into()),
        ..EmbedderOptions::default()
    };
    let error = BertEmbedder::from_dir(&fixtures().join("xlm-roberta-max"), &options).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("config_sentence_transformers.json")
            && message.contains("document, query"),
        "{message}"
    );
}

#[test]
fn a_model_spec_names_the_prompt_through_its_options() {
    use mdsa_engine::ModelBackend;
    use mdsa_engine::spec::{ModelRole, ModelSpec};

    let reference = reference();
    let kind = &reference.kinds["bert-mean"];
    let dir = fixtures().join("bert-mean");
    let mut spec = ModelSpec::new("e5-tiny", dir.display().to_string(), ModelRole::Encoder);
    spec.device = "cpu".into();
    spec.options.insert("prompt_name", "query");
    let loaded = mdsa_models::manager::LocalBackend::default()
        .load(&spec)
        .unwrap();
    let mdsa_engine::LoadedEngine::Encoder(embedder) = loaded.engine else {
        panic!("an encoder spec loads an encoder");
    };
    let sentence = &kind.sentences[1];
    let got = embedder.embed(&[&sentence.text]).unwrap().remove(0);
    let cos = mdsa_engine::cosine_similarity(&got, &sentence.embedding);
    assert!(cos >= 0.99999, "cosine {cos}");

    spec.options.insert("prompt_name", "nonsense");
    let error = mdsa_models::manager::LocalBackend::default()
        .load(&spec)
        .expect_err("an unknown prompt fails")
        .to_string();
    assert!(error.contains("nonsense"), "{error}");
}
