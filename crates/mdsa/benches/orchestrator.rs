//! What mdsa adds around the models, per request, with the real models.
//!
//! - `route`: one routing decision (encoder forward pass + domain scoring).
//! - `query_8_tokens`: a whole routed, validated, logged query capped at 8 tokens.
//! - `overhead_per_query`: the part of that query that is not model compute
//!   (`ResponseTimings::overhead`: scoring, prompt building, validation,
//!   workflow, logging and metrics), measured inside the same requests.
//! - `overhead/{route,execute,rest}`: that overhead split in three: routing
//!   beyond the encoder (tokenizing aside, scoring the domains), executing
//!   beyond the generator (prompt, validation, events), and the rest of the
//!   request (workflow, decision, model lookup).
//!
//! `cargo bench -p mdsa --bench orchestrator`. Needs `cargo xtask fetch-models`.

use std::ops::ControlFlow;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mdsa::{Mdsa, QueryOptions};

const QUERIES: [&str; 4] = [
    "Should I pay off my credit card before investing?",
    "I have a fever and a headache. What should I do?",
    "I was charged twice for my subscription.",
    "How do I fix a segmentation fault in C?",
];

fn bench(c: &mut Criterion) {
    let mdsa = match Mdsa::builder().build() {
        Ok(mdsa) => mdsa,
        // Without the models there is nothing to measure; say so and stop.
        Err(error) => panic!("run `cargo xtask fetch-models` first: {error}"),
    };
    let options = QueryOptions {
        max_tokens: Some(8),
        ..QueryOptions::default()
    };
    let query = |i: usize| {
        mdsa.query_with(QUERIES[i % QUERIES.len()], &options, &mut |_| {
            ControlFlow::Continue(())
        })
        .expect("query answered")
    };
    // Load the generator once so that no measurement includes a cold load.
    query(0);

    let mut group = c.benchmark_group("orchestrator");
    let mut i = 0;
    group.bench_function("route", |b| {
        b.iter(|| {
            i += 1;
            mdsa.route(QUERIES[i % QUERIES.len()]).expect("routed")
        })
    });
    group.sample_size(20);
    group.bench_function("query_8_tokens", |b| {
        b.iter(|| {
            i += 1;
            query(i)
        })
    });
    group.bench_function("overhead_per_query", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    i += 1;
                    query(i).timings.overhead()
                })
                .sum::<Duration>()
        })
    });
    type Part = fn(&mdsa::QueryResponse) -> Duration;
    let parts: [(&str, Part); 3] = [
        ("overhead/route", |r| {
            r.timings.route.saturating_sub(encode_time(r))
        }),
        ("overhead/execute", |r| {
            let generation = r.timings.model.saturating_sub(encode_time(r));
            r.timings.generate.saturating_sub(generation)
        }),
        ("overhead/rest", |r| {
            let t = &r.timings;
            t.total
                .saturating_sub(t.route)
                .saturating_sub(t.load)
                .saturating_sub(t.generate)
        }),
    ];
    for (name, part) in parts {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        i += 1;
                        part(&query(i))
                    })
                    .sum::<Duration>()
            })
        });
    }
    group.finish();
}

/// The encoder's share of the routing time (the rest of `timings.model` is
/// generation).
fn encode_time(response: &mdsa::QueryResponse) -> Duration {
    Duration::from_secs_f64(response.route.encode_ms / 1e3)
}

criterion_group!(benches, bench);
criterion_main!(benches);
