//! What one run measured, summed up: counts, errors by kind, throughput and
//! latency percentiles from the sorted samples.

use std::collections::BTreeMap;
use std::time::Duration;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// A 2xx answer.
    Ok {
        /// `usage.completion_tokens` (0 for routes and abstentions).
        completion_tokens: u64,
        /// The router abstained (no domain fit).
        abstained: bool,
        /// The server's time from the request's start to its first generated
        /// text (`mdsa.timings.first_token_ms`); `None` for routes and
        /// abstentions.
        first_token: Option<Duration>,
    },
    /// An HTTP error answer: status and the body's `error.code`.
    Http { status: u16, code: String },
    /// No HTTP answer at all (connection refused or reset, timeout): lost.
    Transport(String),
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sample {
    pub(super) latency: Duration,
    pub(super) outcome: Outcome,
}

/// Latency percentiles of the successful requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Latency {
    pub(super) p50: Duration,
    pub(super) p95: Duration,
    pub(super) p99: Duration,
    pub(super) max: Duration,
    pub(super) mean: Duration,
}

/// The figures of one (mode, clients) run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Summary {
    /// Requests sent.
    pub(super) requests: usize,
    /// 2xx answers.
    pub(super) ok: usize,
    /// Abstentions among them.
    pub(super) abstained: usize,
    /// Everything else, by `"STATUS code"` or `"transport: what"`.
    pub(super) errors: BTreeMap<String, usize>,
    /// Requests that got no HTTP answer.
    pub(super) no_answer: usize,
    pub(super) completion_tokens: u64,
    pub(super) wall: Duration,
    pub(super) latency: Latency,
    /// Time to first token of the answers that generated text.
    pub(super) first_token: Option<Latency>,
}

impl Summary {
    pub(super) fn new(samples: &[Sample], wall: Duration) -> Self {
        let mut summary = Self {
            requests: samples.len(),
            wall,
            ..Self::default()
        };
        let mut ok_latencies = Vec::with_capacity(samples.len());
        let mut first_tokens = Vec::new();
        for sample in samples {
            match &sample.outcome {
                Outcome::Ok {
                    completion_tokens,
                    abstained,
                    first_token,
                } => {
                    summary.ok += 1;
                    summary.abstained += usize::from(*abstained);
                    summary.completion_tokens += completion_tokens;
                    ok_latencies.push(sample.latency);
                    first_tokens.extend(*first_token);
                }
                Outcome::Http { status, code } => {
                    *summary
                        .errors
                        .entry(format!("{status} {code}"))
                        .or_default() += 1;
                }
                Outcome::Transport(what) => {
                    summary.no_answer += 1;
                    *summary
                        .errors
                        .entry(format!("transport: {what}"))
                        .or_default() += 1;
                }
            }
        }
        ok_latencies.sort_unstable();
        summary.latency = latency(&ok_latencies);
        first_tokens.sort_unstable();
        summary.first_token = (!first_tokens.is_empty()).then(|| latency(&first_tokens));
        summary
    }

    pub(super) fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    /// Successful requests per second of wall time.
    pub(super) fn throughput(&self) -> f64 {
        per_second(self.ok as f64, self.wall)
    }

    /// Generated tokens per second of wall time.
    pub(super) fn tokens_per_second(&self) -> f64 {
        per_second(self.completion_tokens as f64, self.wall)
    }
}

fn per_second(count: f64, wall: Duration) -> f64 {
    let seconds = wall.as_secs_f64();
    if seconds > 0.0 { count / seconds } else { 0.0 }
}

fn latency(sorted: &[Duration]) -> Latency {
    let at = |q| percentile(sorted, q).unwrap_or_default();
    let total: Duration = sorted.iter().sum();
    Latency {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: sorted.last().copied().unwrap_or_default(),
        mean: u32::try_from(sorted.len())
            .ok()
            .filter(|&n| n > 0)
            .map_or(Duration::ZERO, |n| total / n),
    }
}

/// The nearest-rank percentile of ascending `sorted`: the smallest sample
/// with at least `q` of the samples at or below it. `None` when empty.
pub(super) fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&hundred, 0.50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&hundred, 0.95), Some(Duration::from_millis(95)));
        assert_eq!(percentile(&hundred, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&hundred, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&hundred, 0.0), Some(Duration::from_millis(1)));

        let few = ms(&[10, 20, 30, 40]);
        assert_eq!(percentile(&few, 0.50), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&few, 0.51), Some(Duration::from_millis(30)));
        assert_eq!(percentile(&few, 0.99), Some(Duration::from_millis(40)));
        assert_eq!(percentile(&ms(&[7]), 0.95), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn summary_counts_errors_by_kind_and_times_only_successes() {
        let ok = |latency, tokens, abstained| Sample {
            latency: Duration::from_millis(latency),
            outcome: Outcome::Ok {
                completion_tokens: tokens,
                abstained,
                first_token: None,
            },
        };
        let samples = vec![
            ok(30, 16, false),
            ok(10, 0, true),
            ok(20, 16, false),
            Sample {
                latency: Duration::from_millis(1),
                outcome: Outcome::Http {
                    status: 429,
                    code: "queue_full".into(),
                },
            },
            Sample {
                latency: Duration::from_millis(900),
                outcome: Outcome::Transport("timeout".into()),
            },
        ];
        let summary = Summary::new(&samples, Duration::from_secs(2));
        assert_eq!(summary.requests, 5);
        assert_eq!(summary.ok, 3);
        assert_eq!(summary.abstained, 1);
        assert_eq!(summary.no_answer, 1);
        assert_eq!(summary.error_count(), 2);
        assert_eq!(summary.errors["429 queue_full"], 1);
        assert_eq!(summary.errors["transport: timeout"], 1);
        assert_eq!(summary.completion_tokens, 32);
        assert!((summary.throughput() - 1.5).abs() < 1e-9);
        assert!((summary.tokens_per_second() - 16.0).abs() < 1e-9);
        assert_eq!(summary.latency.p50, Duration::from_millis(20));
        assert_eq!(summary.latency.max, Duration::from_millis(30));
        assert_eq!(summary.latency.mean, Duration::from_millis(20));
    }

    #[test]
    fn an_empty_run_is_all_zeros() {
        let summary = Summary::new(&[], Duration::ZERO);
        assert_eq!(summary.latency, Latency::default());
        assert_eq!(summary.throughput(), 0.0);
    }
}
