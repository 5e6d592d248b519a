//! Where a routed query's time goes beyond the models, as the 10th
//! percentile and median of many real queries (the orchestrator bench's four
//! queries, 8 tokens each, the generator resident).
//!
//! ```sh
//! cargo run --release -p mdsa --example overhead [QUERIES]
//! ```
//!
//! Prints, in µs: `overhead` ([`ResponseTimings::overhead`]) and its three
//! parts as `cargo bench -p mdsa --bench orchestrator` splits it (routing
//! beyond the encoder, executing beyond the generator, the rest); `with log`,
//! the same with the request's logging and metrics (published after its
//! total is taken); a routing decision beyond the encoder on its own, right
//! after a query (`Mdsa::route`); and the first token's time after routing
//! (prompt, tokenizing, prefill). On a shared virtual machine criterion's
//! means move with the neighbours' load; percentiles of two builds run
//! alternately move far less. Needs `cargo xtask fetch-models`.
//!
//! [`ResponseTimings::overhead`]: mdsa::ResponseTimings::overhead

#![allow(clippy::print_stdout)]

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use mdsa::{Mdsa, QueryOptions};

/// The queries of `benches/orchestrator.rs`.
const QUERIES: [&str; 4] = [
    "Should I pay off my credit card before investing?",
    "I have a fever and a headache. What should I do?",
    "I was charged twice for my subscription.",
    "How do I fix a segmentation fault in C?",
];

fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args().nth(1).map_or(Ok(300), |s| s.parse())?;
    let mdsa = Mdsa::builder().build()?;
    let options = QueryOptions {
        max_tokens: Some(8),
        ..QueryOptions::default()
    };
    let query = |i: usize| {
        mdsa.query_with(QUERIES[i % QUERIES.len()], &options, &mut |_| {
            ControlFlow::Continue(())
        })
    };
    // Load the generator once so that no measurement includes a cold load.
    query(0)?;

    let names = [
        "overhead",
        "  routing",
        "  executing",
        "  the rest",
        "with log",
        "routing decision",
        "first token",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(count); names.len()];
    for i in 0..count {
        let started = Instant::now();
        let response = query(i)?;
        let wall = started.elapsed();
        let t = &response.timings;
        let encode = Duration::from_secs_f64(response.route.encode_ms / 1e3);
        let decision = mdsa.route(QUERIES[i % QUERIES.len()])?;
        let parts = [
            t.overhead(),
            t.route.saturating_sub(encode),
            t.generate.saturating_sub(t.model.saturating_sub(encode)),
            t.total
                .saturating_sub(t.route)
                .saturating_sub(t.load)
                .saturating_sub(t.generate),
            wall.saturating_sub(t.model + t.load),
            Duration::from_secs_f64((decision.latency_ms - decision.encode_ms).max(0.0) / 1e3),
            t.first_token.unwrap_or_default().saturating_sub(t.route),
        ];
        for (sample, part) in samples.iter_mut().zip(parts) {
            sample.push(part.as_secs_f64() * 1e6);
        }
    }
    println!("{count} queries, µs            p10      p50");
    for (name, mut sample) in names.into_iter().zip(samples) {
        sample.sort_by(f64::total_cmp);
        let at = |q: usize| sample[(sample.len() * q / 100).min(sample.len() - 1)];
        println!("{name:<22} {:>8.1} {:>8.1}", at(10), at(50));
    }
    Ok(())
}
