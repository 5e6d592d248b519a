//! Prometheus (OpenMetrics text) exposition of the collector's data.
//!
//! The built-in metrics are computed at scrape time from the collector's own
//! counters through a prometheus-client [`Collector`], rather than mirrored
//! into live prometheus-client metrics on every request: one source of
//! truth, and no second set of locks on the recording path. Metrics other
//! crates register follow, then the `# EOF` marker.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::error::MonitorError;
use crate::metrics::{BUCKET_BOUNDS_SECS, BucketCounts, LatencySummary, MetricsCollector, PairRow};
use crate::models::{ModelResidency, ModelRow};
use crate::record::RequestStatus;

/// Everything a scrape shows, read out of the collector once so the
/// exposition is consistent with itself.
#[derive(Debug)]
struct Scrape {
    pairs: Vec<PairRow>,
    latency: LatencySummary,
    throughput_rps: f64,
    error_rate: f64,
    uptime_secs: f64,
    models: Vec<ModelRow>,
    per_device: std::collections::BTreeMap<String, u64>,
}

pub(crate) fn encode(collector: &MetricsCollector) -> Result<String, MonitorError> {
    let snapshot = collector.snapshot();
    let scrape = Scrape {
        pairs: collector.pair_rows(),
        latency: snapshot.total.latency,
        throughput_rps: snapshot.throughput_rps,
        error_rate: snapshot.total.error_rate,
        uptime_secs: snapshot.uptime_secs,
        models: collector.model_metrics().rows(),
        per_device: snapshot.model_residency.per_device,
    };
    let mut builtin = Registry::with_prefix("mdsa");
    builtin.register_collector(Box::new(scrape));

    let mut out = String::new();
    let result = encode_registry(&mut out, &builtin)
        .and_then(|()| collector.with_registry(|extra| encode_registry(&mut out, extra)))
        .and_then(|()| encode_eof(&mut out));
    result.map_err(|source| MonitorError::Prometheus { source })?;
    Ok(out)
}

fn pair_labels(pair: &PairRow) -> [(&'static str, &str); 2] {
    [
        ("domain", pair.domain.as_str()),
        ("model", pair.model.as_str()),
    ]
}

fn encode_histogram<R>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[R],
    labels: impl Fn(&R) -> Vec<(&'static str, String)>,
    buckets: impl Fn(&R) -> &BucketCounts,
) -> Result<(), std::fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for row in rows {
        let b = buckets(row);
        let bounds: Vec<(f64, u64)> = BUCKET_BOUNDS_SECS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(b.counts)
            .collect();
        let labels = labels(row);
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(b.sum_secs, b.count, &bounds, None)?;
    }
    Ok(())
}

fn owned_pair_labels(pair: &PairRow) -> Vec<(&'static str, String)> {
    pair_labels(pair)
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect()
}

fn model_label(row: &ModelRow) -> Vec<(&'static str, String)> {
    vec![("model", row.model.clone())]
}

/// Reads one counter of a model.
type ModelCount = fn(&ModelResidency) -> u64;

/// The model manager's series: counters and load time per model, resident
/// bytes per model and per device.
fn encode_models(
    encoder: &mut DescriptorEncoder<'_>,
    rows: &[ModelRow],
    per_device: &std::collections::BTreeMap<String, u64>,
) -> Result<(), std::fmt::Error> {
    let counters: [(&str, &str, ModelCount); 11] = [
        ("model_loads", "Model loads finished.", |m| m.loads),
        (
            "model_hits",
            "Model requests that found the model resident.",
            |m| m.hits,
        ),
        (
            "model_misses",
            "Model requests that had to load (or wait for a load).",
            |m| m.misses,
        ),
        (
            "model_evictions",
            "Models evicted to make room or after their idle TTL.",
            |m| m.evictions,
        ),
        ("model_unloads", "Models unloaded on request.", |m| {
            m.unloads
        }),
        ("model_load_failures", "Model loads that failed.", |m| {
            m.failures
        }),
        (
            "model_prefix_hits",
            "Prompts that started with a prompt prefix the generator kept.",
            |m| m.prefix_hits,
        ),
        (
            "model_prefix_misses",
            "Prompts that started with no kept prefix.",
            |m| m.prefix_misses,
        ),
        (
            "model_cached_prompt_tokens",
            "Prompt tokens taken from kept prefixes instead of being run.",
            |m| m.cached_prompt_tokens,
        ),
        (
            "model_batch_steps",
            "Batched forward passes a generator ran since it loaded.",
            |m| m.serving.batch_steps,
        ),
        (
            "model_batch_sequences",
            "Sequences summed over those passes (divided by the steps: the mean batch size).",
            |m| m.serving.batch_sequences,
        ),
    ];
    for (name, help, value) in counters {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for row in rows {
            let labels = [("model", row.model.as_str())];
            ConstCounter::new(value(&row.figures)).encode(metric.encode_family(&labels)?)?;
        }
    }
    encode_histogram(
        encoder,
        "model_load_duration",
        "Wall time of model loads.",
        rows,
        model_label,
        |r| &r.load_duration,
    )?;
    let gauges: [(&str, &str, Option<Unit>, ModelCount); 3] = [
        (
            "model_batch_size_max",
            "The most sequences one batched pass of the generator ran.",
            None,
            |m| m.serving.largest_batch,
        ),
        (
            "model_active_sequences",
            "Sequences the generator runs now.",
            None,
            |m| m.serving.active_sequences,
        ),
        (
            "model_kv_cache",
            "Bytes of keys and values the generator holds now: running sequences and kept prompt prefixes.",
            Some(Unit::Bytes),
            |m| m.serving.kv_cache_bytes,
        ),
    ];
    for (name, help, unit, value) in gauges {
        let mut metric = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
        for row in rows {
            let labels = [("model", row.model.as_str())];
            ConstGauge::new(value(&row.figures) as i64).encode(metric.encode_family(&labels)?)?;
        }
    }
    let mut resident = encoder.encode_descriptor(
        "model_resident",
        "Bytes a model holds (weights plus KV reservation), by model and device.",
        Some(&Unit::Bytes),
        MetricType::Gauge,
    )?;
    for row in rows {
        let labels = [
            ("model", row.model.as_str()),
            ("device", row.figures.device.as_str()),
        ];
        ConstGauge::new(row.figures.resident_bytes as i64)
            .encode(resident.encode_family(&labels)?)?;
    }
    let mut device = encoder.encode_descriptor(
        "device_resident",
        "Bytes resident models hold, by device.",
        Some(&Unit::Bytes),
        MetricType::Gauge,
    )?;
    for (name, bytes) in per_device {
        let labels = [("device", name.as_str())];
        ConstGauge::new(*bytes as i64).encode(device.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_pair_counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    pairs: &[PairRow],
    value: impl Fn(&PairRow) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for pair in pairs {
        let labels = pair_labels(pair);
        ConstCounter::new(value(pair)).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(metric)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut requests = encoder.encode_descriptor(
            "requests",
            "Requests by routed domain, model and final status.",
            None,
            MetricType::Counter,
        )?;
        for pair in &self.pairs {
            // Every status, zeros included, so rate() works from the first
            // failure on.
            for status in RequestStatus::ALL {
                let labels = [
                    ("domain", pair.domain.as_str()),
                    ("model", pair.model.as_str()),
                    ("status", status.as_str()),
                ];
                ConstCounter::new(pair.status.get(status))
                    .encode(requests.encode_family(&labels)?)?;
            }
        }

        encode_histogram(
            &mut encoder,
            "request_duration",
            "End-to-end request latency.",
            &self.pairs,
            owned_pair_labels,
            |p| &p.duration,
        )?;
        encode_histogram(
            &mut encoder,
            "time_to_first_token",
            "Time from request start to the first generated token, for streamed answers.",
            &self.pairs,
            owned_pair_labels,
            |p| &p.ttft,
        )?;

        let mut quantiles = encoder.encode_descriptor(
            "request_latency_quantile",
            "End-to-end latency percentiles over all requests since start (nearest rank, HDR histogram, 0.1% precision).",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (quantile, ms) in [
            ("0.5", self.latency.p50_ms),
            ("0.95", self.latency.p95_ms),
            ("0.99", self.latency.p99_ms),
        ] {
            let labels = [("quantile", quantile)];
            ConstGauge::new(ms / 1000.0).encode(quantiles.encode_family(&labels)?)?;
        }

        encode_pair_counter(
            &mut encoder,
            "tokens_in",
            "Prompt tokens by domain and model.",
            &self.pairs,
            |p| p.tokens_in,
        )?;
        encode_pair_counter(
            &mut encoder,
            "tokens_out",
            "Generated tokens by domain and model.",
            &self.pairs,
            |p| p.tokens_out,
        )?;

        encode_gauge(
            &mut encoder,
            "throughput_requests_per_second",
            "Requests per second over the sliding window.",
            self.throughput_rps,
        )?;
        encode_gauge(
            &mut encoder,
            "error_rate",
            "Failed requests over all requests since start.",
            self.error_rate,
        )?;
        let uptime = ConstGauge::new(self.uptime_secs);
        let metric = encoder.encode_descriptor(
            "uptime",
            "Time since the metrics collector started.",
            Some(&Unit::Seconds),
            uptime.metric_type(),
        )?;
        uptime.encode(metric)?;
        encode_models(&mut encoder, &self.models, &self.per_device)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::DateTime;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;

    use crate::clock::ManualClock;
    use crate::metrics::{MetricsConfig, NONE_LABEL, Observation};
    use crate::{MetricsCollector, ModelServing, RequestStatus};

    /// One sample line: name, labels, value.
    #[derive(Debug, PartialEq)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// Parses a label set `k="v",…` (after `{`), handling the `\\`, `\"`
    /// and `\n` escapes; returns the labels and the rest after `}`.
    fn parse_labels(mut s: &str) -> (BTreeMap<String, String>, &str) {
        let mut labels = BTreeMap::new();
        loop {
            if let Some(rest) = s.strip_prefix('}') {
                return (labels, rest);
            }
            s = s.strip_prefix(',').unwrap_or(s);
            let (key, rest) = s.split_once("=\"").expect("label key");
            assert!(
                key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad label name {key:?}"
            );
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().expect("unterminated label value") {
                    (_, '\\') => match chars.next().expect("escape").1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_owned(), value);
            s = &rest[end + 1..];
        }
    }

    /// Checks that every line is a comment or `name{labels} value`, and
    /// returns the samples.
    fn parse(text: &str) -> Vec<Sample> {
        assert!(text.ends_with("# EOF\n"), "{text}");
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                assert!(
                    ["HELP ", "TYPE ", "UNIT ", "EOF"]
                        .iter()
                        .any(|p| comment.starts_with(p)),
                    "{line}"
                );
                continue;
            }
            let name_end = line.find(['{', ' ']).expect(line);
            let name = &line[..name_end];
            assert!(
                name.starts_with("mdsa_")
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            let (labels, rest) = match line[name_end..].strip_prefix('{') {
                Some(rest) => parse_labels(rest),
                None => (BTreeMap::new(), &line[name_end..]),
            };
            let value = rest.strip_prefix(' ').expect(line);
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            assert!(!value.is_nan(), "{line}");
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
        samples
    }

    fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
        samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        match find(samples, name, labels).as_slice() {
            [one] => one.value,
            other => panic!("{name} {labels:?}: {} matches", other.len()),
        }
    }

    fn collector() -> MetricsCollector {
        let clock = Arc::new(ManualClock::new(
            DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        ));
        let collector = MetricsCollector::with_clock(MetricsConfig::default(), clock.clone());
        for i in 0..10u64 {
            let status = if i < 2 {
                RequestStatus::Failed
            } else {
                RequestStatus::Completed
            };
            collector.record(
                &Observation::new(status, Duration::from_millis(100 * (i + 1)))
                    .domain("finance")
                    .model("fin \"7b\"")
                    .tokens(3, 7)
                    .time_to_first_token(Duration::from_millis(20)),
            );
        }
        collector.record(&Observation::new(
            RequestStatus::Abstained,
            Duration::from_millis(3),
        ));
        clock.advance(Duration::from_secs(9));
        collector
    }

    #[test]
    fn serving_figures_are_counters_and_gauges_per_model() {
        let collector = collector();
        let models = collector.model_metrics();
        models.record_load("smol", "cpu", Duration::from_millis(5), 1000);
        models.record_serving(
            "smol",
            ModelServing {
                batch_steps: 40,
                batch_sequences: 100,
                largest_batch: 4,
                active_sequences: 3,
                kv_cache_bytes: 65_536,
            },
        );
        let samples = parse(&collector.encode_prometheus().unwrap());
        let smol = [("model", "smol")];
        assert_eq!(value(&samples, "mdsa_model_batch_steps_total", &smol), 40.0);
        assert_eq!(
            value(&samples, "mdsa_model_batch_sequences_total", &smol),
            100.0
        );
        assert_eq!(value(&samples, "mdsa_model_batch_size_max", &smol), 4.0);
        assert_eq!(value(&samples, "mdsa_model_active_sequences", &smol), 3.0);
        assert_eq!(
            value(&samples, "mdsa_model_kv_cache_bytes", &smol),
            65_536.0
        );
        assert!(
            (collector.snapshot().model_residency.per_model["smol"]
                .serving
                .mean_batch()
                - 2.5)
                .abs()
                < 1e-12
        );
        // Evicted: nothing runs or is held; the pass counts stay.
        models.record_eviction("smol");
        let samples = parse(&collector.encode_prometheus().unwrap());
        assert_eq!(value(&samples, "mdsa_model_kv_cache_bytes", &smol), 0.0);
        assert_eq!(value(&samples, "mdsa_model_active_sequences", &smol), 0.0);
        assert_eq!(value(&samples, "mdsa_model_batch_steps_total", &smol), 40.0);
    }

    #[test]
    fn exposition_has_every_family_with_labels_and_counts() {
        let text = collector().encode_prometheus().unwrap();
        let samples = parse(&text);
        let fin = [("domain", "finance"), ("model", "fin \"7b\"")];
        let none = [("domain", NONE_LABEL), ("model", NONE_LABEL)];

        let requests = |labels: &[(&str, &str)], status| {
            let mut l = labels.to_vec();
            l.push(("status", status));
            value(&samples, "mdsa_requests_total", &l)
        };
        assert_eq!(requests(&fin, "completed"), 8.0);
        assert_eq!(requests(&fin, "failed"), 2.0);
        assert_eq!(requests(&fin, "cancelled"), 0.0);
        assert_eq!(requests(&none, "abstained"), 1.0);
        assert_eq!(find(&samples, "mdsa_requests_total", &[]).len(), 10);

        assert_eq!(
            value(&samples, "mdsa_request_duration_seconds_count", &fin),
            10.0
        );
        assert!((value(&samples, "mdsa_request_duration_seconds_sum", &fin) - 5.5).abs() < 1e-9);
        let bucket = |le| {
            let mut l = fin.to_vec();
            l.push(("le", le));
            value(&samples, "mdsa_request_duration_seconds_bucket", &l)
        };
        assert_eq!(bucket("0.1"), 1.0);
        assert_eq!(bucket("0.25"), 2.0);
        assert_eq!(bucket("0.5"), 5.0);
        assert_eq!(bucket("1.0"), 10.0);
        assert_eq!(bucket("+Inf"), 10.0);
        assert_eq!(
            value(&samples, "mdsa_request_duration_seconds_count", &none),
            1.0
        );

        assert_eq!(
            value(&samples, "mdsa_time_to_first_token_seconds_count", &fin),
            10.0
        );
        assert_eq!(
            value(&samples, "mdsa_time_to_first_token_seconds_count", &none),
            0.0
        );

        // 11 samples: 3 ms and 100..=1000 ms. Nearest rank 6 is 500 ms,
        // rank 11 is 1000 ms.
        let q = |quantile| {
            value(
                &samples,
                "mdsa_request_latency_quantile_seconds",
                &[("quantile", quantile)],
            )
        };
        assert!((q("0.5") - 0.5).abs() <= 0.5 * 0.001, "{}", q("0.5"));
        assert_eq!(q("0.95"), 1.0);
        assert_eq!(q("0.99"), 1.0);

        assert_eq!(value(&samples, "mdsa_tokens_in_total", &fin), 30.0);
        assert_eq!(value(&samples, "mdsa_tokens_out_total", &fin), 70.0);
        assert_eq!(value(&samples, "mdsa_tokens_out_total", &none), 0.0);
        // 11 requests in the 10 seconds since start.
        assert_eq!(
            value(&samples, "mdsa_throughput_requests_per_second", &[]),
            1.1
        );
        assert_eq!(value(&samples, "mdsa_error_rate", &[]), 2.0 / 11.0);
        assert_eq!(value(&samples, "mdsa_uptime_seconds", &[]), 9.0);

        for family in [
            "# TYPE mdsa_requests counter",
            "# TYPE mdsa_request_duration_seconds histogram",
            "# TYPE mdsa_time_to_first_token_seconds histogram",
            "# TYPE mdsa_request_latency_quantile_seconds gauge",
            "# TYPE mdsa_tokens_in counter",
            "# TYPE mdsa_tokens_out counter",
            "# TYPE mdsa_throughput_requests_per_second gauge",
            "# TYPE mdsa_error_rate gauge",
        ] {
            assert!(text.contains(family), "{family} missing from\n{text}");
        }
    }

    #[test]
    fn empty_collector_encodes_without_nan() {
        let text = MetricsCollector::default().encode_prometheus().unwrap();
        let samples = parse(&text);
        assert_eq!(value(&samples, "mdsa_error_rate", &[]), 0.0);
        assert_eq!(find(&samples, "mdsa_requests_total", &[]).len(), 0);
    }

    #[test]
    fn other_crates_can_register_metrics() {
        let collector = collector();
        let loads = Family::<[(&'static str, &'static str); 1], Counter>::default();
        collector.register("model_loads", "Model loads.", loads.clone());
        loads.get_or_create(&[("model", "fin-7b")]).inc();
        collector.with_registry(|r| {
            r.sub_registry_with_prefix("server").register(
                "connections",
                "Open connections.",
                Counter::<u64>::default(),
            )
        });
        let text = collector.encode_prometheus().unwrap();
        let samples = parse(&text);
        assert_eq!(
            value(&samples, "mdsa_model_loads_total", &[("model", "fin-7b")]),
            1.0
        );
        assert_eq!(value(&samples, "mdsa_server_connections_total", &[]), 0.0);
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
