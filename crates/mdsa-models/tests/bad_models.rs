//! Decoder files that are wrong for their architecture: each load fails with
//! an error naming the file and what is wrong, and nothing panics.

mod common;

use common::tiny_gguf::{Flaw, tiny_decoder};
use mdsa_engine::{source::ModelRef, source::ResolveOptions};
use mdsa_models::generate::{DecoderGenerator, DecoderOptions};

fn load(flaw: Flaw) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flawed.gguf");
    tiny_decoder(3, flaw).write(&path).unwrap();
    let reference = path.display().to_string().parse::<ModelRef>().unwrap();
    let error = DecoderGenerator::load(
        &reference,
        &ResolveOptions::offline(),
        &DecoderOptions::default(),
    )
    .err()
    .unwrap_or_else(|| panic!("a decoder with {flaw:?} must not load"));
    (error.to_string(), path.display().to_string())
}

#[test]
fn a_whole_tiny_decoder_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("whole.gguf");
    tiny_decoder(3, Flaw::None).write(&path).unwrap();
    let reference = path.display().to_string().parse::<ModelRef>().unwrap();
    DecoderGenerator::load(
        &reference,
        &ResolveOptions::offline(),
        &DecoderOptions::default(),
    )
    .expect("the unflawed decoder loads");
}

#[test]
fn an_unknown_architecture_names_it() {
    let (error, path) = load(Flaw::Architecture("gptneox"));
    assert!(error.contains(&path), "{error}");
    assert!(error.contains("gptneox"), "{error}");
    assert!(error.contains("llama"), "lists what is supported: {error}");
}

#[test]
fn a_tensor_of_the_wrong_shape_names_it_and_both_shapes() {
    let (error, path) = load(Flaw::ShortTensor);
    assert!(error.contains(&path), "{error}");
    assert!(error.contains("blk.0.attn_q.weight"), "{error}");
    assert!(
        error.contains("31") && error.contains("32"),
        "both shapes: {error}"
    );
}

#[test]
fn a_missing_tensor_names_it() {
    let (error, path) = load(Flaw::MissingTensor);
    assert!(error.contains(&path), "{error}");
    assert!(error.contains("blk.0.ffn_down.weight"), "{error}");
}

#[test]
fn a_missing_tokenizer_says_so() {
    let (error, path) = load(Flaw::NoTokenizer);
    assert!(error.contains(&path), "{error}");
    assert!(error.contains("tokenizer.ggml.tokens"), "{error}");
}

#[test]
fn a_tensor_type_without_kernels_names_it_and_the_supported_ones() {
    let (error, path) = load(Flaw::UnsupportedType);
    assert!(error.contains(&path), "{error}");
    assert!(error.contains("blk.0.ffn_gate.weight"), "{error}");
    assert!(error.contains("IQ4_NL"), "{error}");
    assert!(error.contains("Q5_1") && error.contains("Q6_K"), "{error}");
    assert_eq!(error.lines().count(), 1, "{error}");
}

#[test]
fn an_unknown_rope_scaling_names_it_and_the_supported_ones() {
    let (error, path) = load(Flaw::RopeScaling("su2"));
    assert!(error.contains(&path), "{error}");
    assert!(error.contains("\"su2\""), "{error}");
    assert!(
        error.contains("llama3") && error.contains("longrope"),
        "{error}"
    );
}
