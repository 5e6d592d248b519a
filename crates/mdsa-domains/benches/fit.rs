//! Choosing abstention thresholds on many routed queries (`mdsa routes fit`
//! after routing): `fit_scores` on 10,000 and 100,000 synthetic queries over
//! ten domains, with scores and confidences as continuous as real ones.
//!
//! `cargo bench -p mdsa-domains --bench fit`. Needs no model.

use criterion::{Criterion, criterion_group, criterion_main};
use mdsa_domains::Thresholds;
use mdsa_domains::eval::{ScoredQuery, fit_scores};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DOMAINS: [&str; 10] = ["d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9"];

/// `n` queries: a fifth out of domain, in-domain ones scoring higher and mostly
/// routed right, from a seeded generator.
fn queries(n: usize) -> Vec<ScoredQuery> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut next = move || rng.random::<f32>();
    (0..n)
        .map(|_| {
            let label = (next() * 12.0) as usize;
            let expected = DOMAINS.get(label).copied();
            let lift = if expected.is_some() { 0.25 } else { 0.0 };
            let best = match expected {
                Some(d) if next() < 0.9 => d,
                _ => DOMAINS[(next() * 10.0) as usize % 10],
            };
            ScoredQuery {
                expected: expected.map(str::to_string),
                best: best.to_string(),
                score: next() * 0.5 + lift,
                confidence: next() * 0.6 + lift,
            }
        })
        .collect()
}

fn fit(c: &mut Criterion) {
    let mut group = c.benchmark_group("routes_fit");
    group.sample_size(10);
    for n in [10_000, 100_000] {
        let scored = queries(n);
        group.bench_function(format!("{n}_queries"), |b| {
            b.iter(|| fit_scores(&DOMAINS, &scored, Thresholds::NEVER_ABSTAIN))
        });
    }
    group.finish();
}

criterion_group!(benches, fit);
criterion_main!(benches);
