//! Router encoder speed: one short query (the latency a routed request pays) and a
//! batch of 32 (throughput when routing files or evaluating a router), with the
//! weights in f32, the short query with f16 and int8 weights (int8, the router's
//! default, on the batch too), and
//! both workloads through burn's modules (the GPU path) for comparison.
//! Resident bytes per format are printed as `mdsa-bench` lines for
//! `cargo xtask bench`.
//!
//! Needs the fetched MiniLM (`cargo xtask fetch-models`). Compare with the same
//! workload through sentence-transformers: `scripts/reference/bench.py encoder`.

// The resident bytes are this bench's extra output.
#![allow(clippy::print_stderr)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mdsa_engine::{
    DEFAULT_ENCODER, Embedder, WeightFormat, source::ModelRef, source::ResolveOptions,
};
use mdsa_models::{BertEmbedder, EmbedderOptions, EncoderPath};

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

fn load(format: WeightFormat, path: EncoderPath, name: &str) -> BertEmbedder {
    let model: ModelRef = DEFAULT_ENCODER.parse().expect("valid id");
    let options = EmbedderOptions {
        format,
        path,
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
    let embedder = load(WeightFormat::F32, EncoderPath::Auto, "f32");
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
        let embedder = load(format, EncoderPath::Auto, name);
        let mut group = c.benchmark_group(format!("encoder/minilm/{name}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("query_batch1", |b| {
            b.iter(|| embedder.embed(&[QUERY]).expect("embeds"))
        });
        // int8 is the router's default: `route_batch` runs this.
        if format == WeightFormat::Int8 {
            group.throughput(Throughput::Elements(refs.len() as u64));
            group.bench_function("batch32", |b| {
                b.iter(|| embedder.embed(&refs).expect("embeds"))
            });
        }
        group.finish();
    }

    let burn = load(WeightFormat::F32, EncoderPath::Burn, "burn");
    let mut group = c.benchmark_group("encoder/minilm/burn");
    group.throughput(Throughput::Elements(1));
    group.bench_function("query_batch1", |b| {
        b.iter(|| burn.embed(&[QUERY]).expect("embeds"))
    });
    group.throughput(Throughput::Elements(refs.len() as u64));
    group.bench_function("batch32", |b| b.iter(|| burn.embed(&refs).expect("embeds")));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(5));
    targets = encoder
}
criterion_main!(benches);
