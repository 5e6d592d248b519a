//! Router encoder speed: one short query (the latency a routed request pays) and a
//! batch of 32 (throughput when routing files or evaluating a router), with the
//! weights in f32 (the default), and the short query with f16 and int8 weights.
//! Resident bytes per format are printed as `mdsa-bench` lines for
//! `cargo xtask bench`.
//!
//! Needs the fetched MiniLM (`cargo xtask fetch-models`). Compare with the same
//! workload through sentence-transformers: `scripts/reference/bench.py encoder`.

// The resident bytes are this bench's extra output.
#![allow(clippy::print_stderr)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mdsa_engine::WeightFormat;
use mdsa_models::source::{ModelRef, ResolveOptions};
use mdsa_models::{BertEmbedder, DEFAULT_ENCODER, Embedder, EmbedderOptions};

/// The same short query the Python reference times (12 tokens with specials).
const QUERY: &str = "What is the interest rate on a 30-year mortgage?";

fn batch_texts() -> Vec<String> {
    (0..32)
        .map(|i| {
            format!(
                "Query number {i}: my laptop will not connect to the office VPN since the update"
            )
        })
        .collect()
}

fn load(format: WeightFormat, name: &str) -> BertEmbedder {
    let model: ModelRef = DEFAULT_ENCODER.parse().expect("valid id");
    let options = EmbedderOptions {
        format,
        ..EmbedderOptions::default()
    };
    let embedder = BertEmbedder::load(&model, &ResolveOptions::offline(), &options)
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask fetch-models`)"));
    eprintln!(
        "mdsa-bench {{\"id\": \"encoder/minilm/{name}/resident_bytes\", \"value\": {}}}",
        embedder.resident_bytes()
    );
    embedder
}

fn encoder(c: &mut Criterion) {
    let embedder = load(WeightFormat::F32, "f32");
    let tokens = embedder.tokenizer().encode(QUERY).expect("tokenizes").len();

    let mut group = c.benchmark_group("encoder/minilm");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("query_batch1_{tokens}tok"), |b| {
        b.iter(|| embedder.embed(&[QUERY]).expect("embeds"))
    });
    let texts = batch_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    group.throughput(Throughput::Elements(refs.len() as u64));
    group.bench_function("batch32", |b| {
        b.iter(|| embedder.embed(&refs).expect("embeds"))
    });
    group.finish();

    for (format, name) in [(WeightFormat::F16, "f16"), (WeightFormat::Int8, "int8")] {
        let embedder = load(format, name);
        let mut group = c.benchmark_group(format!("encoder/minilm/{name}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("query_batch1", |b| {
            b.iter(|| embedder.embed(&[QUERY]).expect("embeds"))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(5));
    targets = encoder
}
criterion_main!(benches);
