//! What monitoring costs each request: recording one observation in the
//! metrics (counters, latency histograms, throughput window), logging one
//! request record in memory (with the finance query redacted to a hash), and
//! rendering `/metrics` for a Prometheus scrape.
//!
//! `cargo bench -p mdsa-monitor --bench metrics`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mdsa_monitor::{
    LatencyBreakdown, LoggerConfig, MetricsCollector, MetricsConfig, Observation, RequestLogger,
    RequestRecord, RequestStatus,
};

const DOMAINS: [&str; 4] = ["finance", "medical", "support", "technical"];

fn observation(i: usize) -> Observation<'static> {
    Observation::new(
        RequestStatus::Completed,
        Duration::from_micros(150_000 + (i as u64 % 97) * 1_000),
    )
    .domain(DOMAINS[i % DOMAINS.len()])
    .model("smollm2")
    .tokens(40, 32)
    .time_to_first_token(Duration::from_millis(90))
}

fn record(i: usize) -> RequestRecord {
    RequestRecord::new(
        format!("req-{i}"),
        "Should I pay off my credit card before investing?",
    )
    .with_route(DOMAINS[i % DOMAINS.len()], 0.83)
    .with_model("smollm2")
    .with_tokens(40, 32)
    .with_latency(
        LatencyBreakdown::default()
            .with_route(Duration::from_millis(12))
            .with_generate(Duration::from_millis(140))
            .with_total(Duration::from_millis(155)),
    )
}

fn monitoring(c: &mut Criterion) {
    let mut group = c.benchmark_group("monitor");
    let metrics = MetricsCollector::new(MetricsConfig::default());
    let mut i = 0;
    group.bench_function("record_observation", |b| {
        b.iter(|| {
            i += 1;
            metrics.record(&observation(i));
        })
    });
    let logger = RequestLogger::new(LoggerConfig::default());
    group.bench_function("log_record", |b| {
        b.iter_batched(
            || {
                i += 1;
                record(i)
            },
            |r| logger.log(r).expect("in-memory log"),
            criterion::BatchSize::SmallInput,
        )
    });
    // Every label combination above is populated by now, as on a busy server.
    group.bench_function("encode_prometheus", |b| {
        b.iter(|| metrics.encode_prometheus().expect("encodes"))
    });
    group.finish();
}

criterion_group!(benches, monitoring);
criterion_main!(benches);
