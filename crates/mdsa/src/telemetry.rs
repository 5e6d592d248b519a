//! The event path of a running [`Mdsa`](crate::Mdsa): everything that counts
//! observes the bus.
//!
//! The model manager publishes a [`ModelEvent`] for each hit, miss, load,
//! failure, eviction and unload; the orchestrator publishes the workflow's
//! transitions ([`mdsa_bus::WorkflowEvent`]) and a [`RequestEvent`] when a request
//! is routed and when it ends. Nothing on the request path calls the metrics or
//! the request log itself: they are synchronous observers
//! ([`Bus::observe`]), wired here once, so each number is recorded in one
//! place and is exact when `query` returns. Tools that only watch (a live
//! view, a trace) subscribe to the same events with a queue.

use std::sync::{Arc, Mutex};

use mdsa_bus::{Bus, Observer};
use mdsa_models::manager::ModelEvent;
use mdsa_monitor::prometheus_client::metrics::counter::Counter;
use mdsa_monitor::prometheus_client::metrics::family::Family;
use mdsa_monitor::prometheus_client::metrics::histogram::Histogram;
use mdsa_monitor::{MetricsCollector, MonitorError, RequestLogger, RequestRecord};

/// What the orchestrator publishes about a request, besides its workflow steps.
#[derive(Debug, Clone)]
pub enum RequestEvent {
    /// The router chose a domain (or abstained: `domain` is `None`).
    Routed {
        /// The request.
        request_id: String,
        /// The chosen domain.
        domain: Option<String>,
        /// The router's confidence.
        confidence: f32,
    },
    /// The request ended (answered, abstained, failed or cancelled): its
    /// complete record, as the log keeps it.
    Finished(Arc<RequestRecord>),
}

/// The observers of one [`Mdsa`](crate::Mdsa); dropping it stops them.
pub(crate) struct Telemetry {
    _models: Observer<ModelEvent>,
    _requests: Observer<RequestEvent>,
    log_failures: Arc<LogFailures>,
}

impl Telemetry {
    /// Registers the metrics and the request log as observers of `bus`.
    pub(crate) fn wire(bus: &Bus, metrics: &MetricsCollector, logger: Arc<RequestLogger>) -> Self {
        let log_failures = Arc::new(LogFailures::default());
        metrics.register(
            "request_log_write_errors",
            "Requests whose record could not be written to the log file (they stay in memory)",
            log_failures.count.clone(),
        );
        let confidence = routing_confidence();
        metrics.register(
            "routing_confidence",
            "The router's confidence in the domain it chose (domain=\"none\": abstained)",
            confidence.clone(),
        );

        let model_metrics = metrics.clone();
        let models = bus.observe(move |event: &ModelEvent| record_model(&model_metrics, event));

        let request_metrics = metrics.clone();
        let failures = Arc::clone(&log_failures);
        let requests = bus.observe(move |event: &RequestEvent| match event {
            RequestEvent::Routed {
                domain,
                confidence: c,
                ..
            } => {
                let label = domain.as_deref().unwrap_or(mdsa_monitor::NONE_LABEL);
                confidence
                    .get_or_create(&[("domain", label.to_string())])
                    .observe(f64::from(*c));
            }
            RequestEvent::Finished(record) => {
                request_metrics.record_request(record);
                // A log file that cannot be written must not lose the answer:
                // the record is still in memory, and the failure is counted and kept.
                if let Err(error) = logger.log(RequestRecord::clone(record)) {
                    failures.record(&error);
                }
            }
        });
        Self {
            _models: models,
            _requests: requests,
            log_failures,
        }
    }

    /// The last error writing the request log file, if any write failed.
    pub(crate) fn last_log_error(&self) -> Option<String> {
        self.log_failures.last()
    }
}

/// One model event into the per-model metrics.
fn record_model(metrics: &MetricsCollector, event: &ModelEvent) {
    let models = metrics.model_metrics();
    match event {
        ModelEvent::Hit { id } => models.record_hit(id),
        ModelEvent::Miss { id, .. } => models.record_miss(id),
        ModelEvent::Downloading { .. } | ModelEvent::LoadStarted { .. } => {}
        ModelEvent::Loaded {
            id,
            device,
            weight_bytes,
            kv_bytes,
            duration,
        } => models.record_load(id, device, *duration, weight_bytes + kv_bytes),
        ModelEvent::LoadFailed { id, .. } => models.record_failure(id),
        ModelEvent::Evicted { id, .. } => models.record_eviction(id),
        ModelEvent::Unloaded { id, .. } => models.record_unload(id),
    }
}

/// The router's confidence per routed request, by domain: where the
/// abstention thresholds sit against real traffic.
type RoutingConfidence = Family<[(&'static str, String); 1], Histogram>;

fn routing_confidence() -> RoutingConfidence {
    Family::new_with_constructor(|| {
        Histogram::new([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
    })
}

/// Failed writes to the request log file: counted (in the Prometheus text) and
/// the last one kept for the caller to show.
#[derive(Default)]
struct LogFailures {
    count: Counter,
    last: Mutex<Option<String>>,
}

impl LogFailures {
    fn record(&self, error: &MonitorError) {
        self.count.inc();
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    fn last(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mdsa_models::manager::EvictReason;
    use mdsa_monitor::{LoggerConfig, RequestStatus};

    use super::*;

    #[test]
    fn model_events_reach_the_metrics_once_each() {
        let bus = Bus::new();
        let metrics = MetricsCollector::default();
        let logger = Arc::new(RequestLogger::new(LoggerConfig::default()));
        let telemetry = Telemetry::wire(&bus, &metrics, logger);
        let loaded = |id: &str| ModelEvent::Loaded {
            id: id.into(),
            device: "cpu".into(),
            weight_bytes: 100,
            kv_bytes: 20,
            duration: Duration::from_millis(5),
        };
        for event in [
            ModelEvent::Miss {
                id: "a".into(),
                joined: false,
            },
            loaded("a"),
            ModelEvent::Hit { id: "a".into() },
            ModelEvent::Evicted {
                id: "a".into(),
                device: "cpu".into(),
                bytes: 120,
                reason: EvictReason::Budget,
            },
            loaded("b"),
        ] {
            bus.publish(event).unwrap();
        }
        let text = metrics.encode_prometheus().unwrap();
        for line in [
            "mdsa_model_loads_total{model=\"a\"} 1",
            "mdsa_model_evictions_total{model=\"a\"} 1",
            "mdsa_model_hits_total{model=\"a\"} 1",
            "mdsa_model_resident_bytes{model=\"b\",device=\"cpu\"} 120",
            "mdsa_device_resident_bytes{device=\"cpu\"} 120",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        drop(telemetry);
        bus.publish(ModelEvent::Hit { id: "a".into() }).unwrap();
        let text = metrics.encode_prometheus().unwrap();
        assert!(text.contains("mdsa_model_hits_total{model=\"a\"} 1"));
    }

    #[test]
    fn a_finished_request_is_counted_and_logged_before_publish_returns() {
        let bus = Bus::new();
        let metrics = MetricsCollector::default();
        let logger = Arc::new(RequestLogger::new(LoggerConfig::default()));
        let _telemetry = Telemetry::wire(&bus, &metrics, Arc::clone(&logger));
        bus.publish(RequestEvent::Routed {
            request_id: "r1".into(),
            domain: Some("finance".into()),
            confidence: 0.93,
        })
        .unwrap();
        let mut record = RequestRecord::new("r1", "What is my balance?");
        record.domain = Some("finance".into());
        let record = record.with_status(RequestStatus::Completed);
        bus.publish(RequestEvent::Finished(Arc::new(record)))
            .unwrap();
        assert_eq!(logger.len(), 1);
        let text = metrics.encode_prometheus().unwrap();
        assert!(
            text.contains("mdsa_routing_confidence_count{domain=\"finance\"} 1"),
            "{text}"
        );
        assert!(text.contains("mdsa_requests_total{"), "{text}");
    }
}
