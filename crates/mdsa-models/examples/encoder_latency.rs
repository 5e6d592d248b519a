//! Latency of one routed query's encoder pass (MiniLM-L6, int8 weights, the
//! router's default), as the minimum, 10th percentile and median of many
//! single calls.
//!
//! ```sh
//! cargo run --release -p mdsa-models --example encoder_latency [CALLS]
//! ```
//!
//! On a shared virtual machine a criterion sample (the mean of many calls)
//! moves with the neighbours' load; the fastest calls of two builds run
//! alternately move far less, which is what comparing two changes needs.
//! Needs `cargo xtask fetch-models`.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use mdsa_engine::{
    DEFAULT_ENCODER, Embedder, WeightFormat, source::ModelRef, source::ResolveOptions,
};
use mdsa_models::{BertEmbedder, EmbedderOptions};

/// The query of `benches/encoder.rs` (14 tokens).
const QUERY: &str = "What is the interest rate on a 30-year mortgage?";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = std::env::args().nth(1).map_or(Ok(1000), |s| s.parse())?;
    let model: ModelRef = DEFAULT_ENCODER.parse()?;
    let options = EmbedderOptions {
        format: WeightFormat::Int8,
        ..EmbedderOptions::default()
    };
    let embedder = BertEmbedder::load(&model, &ResolveOptions::offline(), &options)?;
    for _ in 0..50 {
        embedder.embed(&[QUERY])?;
    }
    let mut times_ms = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        std::hint::black_box(embedder.embed(&[QUERY])?);
        times_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times_ms.sort_by(f64::total_cmp);
    let at = |q: usize| {
        times_ms
            .get(q * times_ms.len() / 100)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "encoder int8, 1 query, {calls} calls: min {:.3} ms, p10 {:.3} ms, p50 {:.3} ms",
        at(0),
        at(10),
        at(50)
    );
    Ok(())
}
