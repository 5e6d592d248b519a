//! The request log: a bounded in-memory store, searchable and exportable,
//! mirrored to an optional JSONL file.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::MonitorError;
use crate::export::{ExportFormat, write_records};
use crate::record::{RequestRecord, RequestStatus, duration_to_us, query_sha256};
use crate::sink::{JsonlSink, SinkConfig};

/// How much of the query text the logger keeps, in memory and on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryStorage {
    /// The text and its hash.
    #[default]
    Full,
    /// Only the SHA-256 hash: repeated queries can still be correlated.
    HashOnly,
    /// Neither text nor hash.
    None,
}

/// Logger settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoggerConfig {
    /// Records kept in memory; the oldest are evicted first. 0 keeps none
    /// (sink only).
    pub capacity: usize,
    /// Query storage for every domain not listed in `redact_domains`.
    pub query_storage: QueryStorage,
    /// Domains (ASCII case-insensitive) whose queries are at most hash-only
    /// whatever `query_storage` says. Defaults to `medical` and `finance`,
    /// whose queries are sensitive.
    pub redact_domains: Vec<String>,
    /// Optional JSONL file mirroring every logged record.
    pub sink: Option<SinkConfig>,
}

impl Default for LoggerConfig {
    fn default() -> Self {
        LoggerConfig {
            capacity: 10_000,
            query_storage: QueryStorage::Full,
            redact_domains: vec!["medical".to_owned(), "finance".to_owned()],
            sink: None,
        }
    }
}

impl LoggerConfig {
    /// The storage policy that applies to a request routed to `domain`.
    pub fn storage_for(&self, domain: Option<&str>) -> QueryStorage {
        let redacted = domain.is_some_and(|d| {
            self.redact_domains
                .iter()
                .any(|r| r.eq_ignore_ascii_case(d))
        });
        match (self.query_storage, redacted) {
            (QueryStorage::Full, true) => QueryStorage::HashOnly,
            (storage, _) => storage,
        }
    }
}

/// Which records [`RequestLogger::query`] returns. All conditions must hold;
/// unset ones match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    /// Exact domain.
    pub domain: Option<String>,
    /// Exact status.
    pub status: Option<RequestStatus>,
    /// Total latency at least this (inclusive).
    pub min_total: Option<Duration>,
    /// Total latency at most this (inclusive).
    pub max_total: Option<Duration>,
    /// Timestamp at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Timestamp strictly before this, so consecutive windows do not
    /// overlap.
    pub until: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the query, error, model or domain. A
    /// hash-only query cannot match.
    pub text: Option<String>,
    /// Skip this many matches (newest first) before returning any.
    pub offset: usize,
    /// Return at most this many matches.
    pub limit: Option<usize>,
}

impl LogFilter {
    /// A filter that matches everything.
    pub fn new() -> Self {
        LogFilter::default()
    }

    /// Only this domain.
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Only this status.
    #[must_use]
    pub fn status(mut self, status: RequestStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only requests that took at least `min` end to end.
    #[must_use]
    pub fn min_total(mut self, min: Duration) -> Self {
        self.min_total = Some(min);
        self
    }

    /// Only requests that took at most `max` end to end.
    #[must_use]
    pub fn max_total(mut self, max: Duration) -> Self {
        self.max_total = Some(max);
        self
    }

    /// Only requests at or after `since`.
    #[must_use]
    pub fn since(mut self, since: DateTime<Utc>) -> Self {
        self.since = Some(since);
        self
    }

    /// Only requests before `until`.
    #[must_use]
    pub fn until(mut self, until: DateTime<Utc>) -> Self {
        self.until = Some(until);
        self
    }

    /// Only requests whose query, error, model or domain contains `text`,
    /// ignoring case.
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Skips the first `offset` matches.
    #[must_use]
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Returns at most `limit` matches.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether `record` satisfies every condition (offset and limit aside).
    pub fn matches(&self, record: &RequestRecord) -> bool {
        self.matcher().matches(record)
    }

    fn matcher(&self) -> Matcher<'_> {
        Matcher {
            filter: self,
            // Lowercased once per query instead of once per record.
            needle: self.text.as_deref().map(str::to_lowercase),
        }
    }
}

struct Matcher<'a> {
    filter: &'a LogFilter,
    needle: Option<String>,
}

impl Matcher<'_> {
    fn matches(&self, r: &RequestRecord) -> bool {
        let f = self.filter;
        let total = r.latency.total_us;
        f.domain
            .as_ref()
            .is_none_or(|d| r.domain.as_ref() == Some(d))
            && f.status.is_none_or(|s| r.status == s)
            && f.min_total.is_none_or(|min| total >= duration_to_us(min))
            && f.max_total.is_none_or(|max| total <= duration_to_us(max))
            && f.since.is_none_or(|since| r.timestamp >= since)
            && f.until.is_none_or(|until| r.timestamp < until)
            && self.needle.as_deref().is_none_or(|needle| {
                [&r.query, &r.error, &r.model, &r.domain]
                    .into_iter()
                    .flatten()
                    .any(|field| field.to_lowercase().contains(needle))
            })
    }
}

/// The request log.
///
/// `Send + Sync`: share it behind an `Arc` and call [`log`](Self::log) from
/// any thread. Queries take a read lock and clone the matching records, so
/// they never block each other, and the file write happens outside the
/// store's lock.
pub struct RequestLogger {
    config: LoggerConfig,
    store: RwLock<VecDeque<RequestRecord>>,
    sink: Option<Mutex<JsonlSink>>,
}

impl fmt::Debug for RequestLogger {
    // Not derived: that would dump every stored record, queries included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestLogger")
            .field("config", &self.config)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl RequestLogger {
    /// A logger with `config`.
    ///
    /// The sink file is opened on the first [`log`](Self::log), not here, so
    /// a missing log directory shows up as an error from `log` (with the
    /// record kept in memory) and the sink recovers once the directory
    /// exists.
    pub fn new(config: LoggerConfig) -> Self {
        let sink = config.sink.clone().map(|c| Mutex::new(JsonlSink::new(c)));
        RequestLogger {
            store: RwLock::new(VecDeque::with_capacity(config.capacity.min(1024))),
            config,
            sink,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LoggerConfig {
        &self.config
    }

    /// Logs `record`.
    ///
    /// The record is normalized ([`RequestRecord::normalized`]), its
    /// `query_hash` filled from the query, and the query storage policy
    /// applied here, before the record is stored anywhere, so redacted text
    /// never reaches memory or disk. A sink error is returned, but the record
    /// is kept in memory all the same.
    pub fn log(&self, record: RequestRecord) -> Result<(), MonitorError> {
        let record = self.redact(record.normalized());
        let sink_result = match &self.sink {
            Some(sink) => self.write_to_sink(sink, &record),
            None => Ok(()),
        };
        if self.config.capacity > 0 {
            let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
            if store.len() >= self.config.capacity {
                store.pop_front();
            }
            store.push_back(record);
        }
        sink_result
    }

    fn redact(&self, mut record: RequestRecord) -> RequestRecord {
        if let Some(query) = &record.query {
            record.query_hash = Some(query_sha256(query));
        }
        match self.config.storage_for(record.domain.as_deref()) {
            QueryStorage::Full => {}
            QueryStorage::HashOnly => record.query = None,
            QueryStorage::None => {
                record.query = None;
                record.query_hash = None;
            }
        }
        record
    }

    fn write_to_sink(
        &self,
        sink: &Mutex<JsonlSink>,
        record: &RequestRecord,
    ) -> Result<(), MonitorError> {
        let path = || {
            self.config
                .sink
                .as_ref()
                .map(|c| c.path.clone())
                .unwrap_or_default()
        };
        // Serialised before taking the lock to keep the critical section to
        // the write itself. Our records always serialise; the error arm is
        // for completeness.
        let mut line = serde_json::to_vec(record).map_err(|e| MonitorError::SinkWrite {
            path: path(),
            id: record.id.clone(),
            source: e.into(),
        })?;
        line.push(b'\n');
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_line(&line, &record.id)
    }

    /// Records currently held in memory.
    pub fn len(&self) -> usize {
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no record is held in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records matching `filter`, most recently logged first, after
    /// `offset` and `limit`.
    pub fn query(&self, filter: &LogFilter) -> Vec<RequestRecord> {
        let matcher = filter.matcher();
        let store = self.store.read().unwrap_or_else(PoisonError::into_inner);
        store
            .iter()
            .rev()
            .filter(|r| matcher.matches(r))
            .skip(filter.offset)
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Writes the records matching `filter` to `writer` in `format` and
    /// returns how many were written.
    pub fn export(
        &self,
        filter: &LogFilter,
        format: ExportFormat,
        writer: impl Write,
    ) -> Result<usize, MonitorError> {
        // Cloned out first so a slow writer never holds the store's lock.
        let records = self.query(filter);
        write_records(&records, format, writer)?;
        Ok(records.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::read_records;
    use crate::sink::read_jsonl;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn record(i: usize, domain: &str, status: RequestStatus, total_ms: u64) -> RequestRecord {
        RequestRecord::new(format!("r{i}"), format!("Query number {i} about {domain}"))
            .with_timestamp(at(i as i64))
            .with_route(domain, 0.9)
            .with_model(format!("{domain}-model"))
            .with_status(status)
            .with_latency(
                crate::LatencyBreakdown::default().with_total(Duration::from_millis(total_ms)),
            )
    }

    fn ids(records: &[RequestRecord]) -> Vec<&str> {
        records.iter().map(|r| r.id.as_str()).collect()
    }

    fn open_config() -> LoggerConfig {
        LoggerConfig {
            redact_domains: Vec::new(),
            ..LoggerConfig::default()
        }
    }

    fn sample_logger() -> RequestLogger {
        let logger = RequestLogger::new(open_config());
        let rows = [
            ("code", RequestStatus::Completed, 100),
            ("legal", RequestStatus::Failed, 2_000),
            ("code", RequestStatus::Completed, 300),
            ("legal", RequestStatus::Abstained, 50),
            ("code", RequestStatus::Failed, 5_000),
        ];
        for (i, (domain, status, ms)) in rows.into_iter().enumerate() {
            let mut r = record(i, domain, status, ms);
            if status == RequestStatus::Failed {
                r = r.with_error(format!("Timeout in step {i}"));
            }
            logger.log(r).unwrap();
        }
        logger
    }

    #[test]
    fn capacity_evicts_oldest() {
        let logger = RequestLogger::new(LoggerConfig {
            capacity: 3,
            ..open_config()
        });
        for i in 0..5 {
            logger
                .log(record(i, "code", RequestStatus::Completed, 1))
                .unwrap();
        }
        assert_eq!(logger.len(), 3);
        assert_eq!(ids(&logger.query(&LogFilter::new())), ["r4", "r3", "r2"]);

        let none = RequestLogger::new(LoggerConfig {
            capacity: 0,
            ..open_config()
        });
        none.log(record(0, "code", RequestStatus::Completed, 1))
            .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn every_filter() {
        let logger = sample_logger();
        let q = |f: LogFilter| ids(&logger.query(&f)).join(",");
        assert_eq!(q(LogFilter::new()), "r4,r3,r2,r1,r0");
        assert_eq!(q(LogFilter::new().domain("code")), "r4,r2,r0");
        assert_eq!(q(LogFilter::new().domain("Code")), "");
        assert_eq!(q(LogFilter::new().status(RequestStatus::Failed)), "r4,r1");
        assert_eq!(
            q(LogFilter::new().min_total(Duration::from_millis(300))),
            "r4,r2,r1"
        );
        assert_eq!(
            q(LogFilter::new().max_total(Duration::from_millis(300))),
            "r3,r2,r0"
        );
        assert_eq!(
            q(LogFilter::new()
                .min_total(Duration::from_millis(100))
                .max_total(Duration::from_millis(2_000))),
            "r2,r1,r0"
        );
        assert_eq!(q(LogFilter::new().since(at(2))), "r4,r3,r2");
        assert_eq!(q(LogFilter::new().until(at(2))), "r1,r0");
        assert_eq!(q(LogFilter::new().since(at(1)).until(at(3))), "r2,r1");
        // Text matches query, error, model and domain, ignoring case.
        assert_eq!(q(LogFilter::new().text("NUMBER 3")), "r3");
        assert_eq!(q(LogFilter::new().text("timeout")), "r4,r1");
        assert_eq!(q(LogFilter::new().text("LEGAL-MOD")), "r3,r1");
        assert_eq!(q(LogFilter::new().text("nothing")), "");
        assert_eq!(
            q(LogFilter::new()
                .domain("code")
                .status(RequestStatus::Failed)),
            "r4"
        );
        assert!(LogFilter::new().domain("legal").matches(&record(
            9,
            "legal",
            RequestStatus::Completed,
            1
        )));
    }

    #[test]
    fn limit_and_offset() {
        let logger = sample_logger();
        let q = |f: LogFilter| ids(&logger.query(&f)).join(",");
        assert_eq!(q(LogFilter::new().limit(2)), "r4,r3");
        assert_eq!(q(LogFilter::new().offset(2).limit(2)), "r2,r1");
        assert_eq!(q(LogFilter::new().offset(4).limit(2)), "r0");
        assert_eq!(q(LogFilter::new().offset(9)), "");
        assert_eq!(q(LogFilter::new().limit(0)), "");
        assert_eq!(q(LogFilter::new().domain("code").offset(1).limit(1)), "r2");
    }

    #[test]
    fn query_hash_is_always_filled() {
        let logger = RequestLogger::new(open_config());
        logger
            .log(record(0, "code", RequestStatus::Completed, 1))
            .unwrap();
        let r = &logger.query(&LogFilter::new())[0];
        assert_eq!(r.query.as_deref(), Some("Query number 0 about code"));
        // Debug output is for diagnostics and must not dump stored queries.
        let debug = format!("{logger:?}");
        assert!(
            debug.contains("len: 1") && !debug.contains("Query number"),
            "{debug}"
        );
        assert_eq!(
            r.query_hash,
            Some(query_sha256("Query number 0 about code"))
        );
    }

    #[test]
    fn hash_only_never_keeps_text_in_memory_or_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let secret = "my secret diagnosis";
        for storage in [QueryStorage::HashOnly, QueryStorage::None] {
            let logger = RequestLogger::new(LoggerConfig {
                query_storage: storage,
                sink: Some(SinkConfig::new(&path)),
                ..open_config()
            });
            logger
                .log(RequestRecord::new("s", secret).with_domain("code"))
                .unwrap();
            let stored = &logger.query(&LogFilter::new())[0];
            assert_eq!(stored.query, None);
            let expected_hash = (storage == QueryStorage::HashOnly).then(|| query_sha256(secret));
            assert_eq!(stored.query_hash, expected_hash);
            assert!(logger.query(&LogFilter::new().text("secret")).is_empty());

            let file = std::fs::read_to_string(&path).unwrap();
            assert!(!file.contains("secret"), "{file}");
            assert_eq!(read_jsonl(&path).unwrap().last(), Some(stored));
        }
    }

    #[test]
    fn redacted_domains_are_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let logger = RequestLogger::new(LoggerConfig {
            sink: Some(SinkConfig::new(&path)),
            ..LoggerConfig::default()
        });
        logger
            .log(RequestRecord::new("m", "chest pain at night").with_domain("Medical"))
            .unwrap();
        logger
            .log(RequestRecord::new("f", "my account balance").with_domain("finance"))
            .unwrap();
        logger
            .log(RequestRecord::new("c", "borrow checker help").with_domain("code"))
            .unwrap();
        let records = logger.query(&LogFilter::new());
        assert_eq!(records[0].query.as_deref(), Some("borrow checker help"));
        for r in &records[1..] {
            assert_eq!(r.query, None, "{}", r.id);
            assert_eq!(r.query_hash.as_ref().map(String::len), Some(64));
        }
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(
            !file.contains("chest") && !file.contains("balance"),
            "{file}"
        );
        assert!(file.contains("borrow checker"));

        // `None` storage stays stronger than the redaction's hash-only.
        let config = LoggerConfig {
            query_storage: QueryStorage::None,
            ..LoggerConfig::default()
        };
        assert_eq!(config.storage_for(Some("medical")), QueryStorage::None);
        assert_eq!(
            LoggerConfig::default().storage_for(None),
            QueryStorage::Full
        );
    }

    #[test]
    fn sink_error_names_path_and_keeps_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no").join("such").join("requests.jsonl");
        let logger = RequestLogger::new(LoggerConfig {
            sink: Some(SinkConfig::new(&path)),
            ..open_config()
        });
        let err = logger
            .log(record(0, "code", RequestStatus::Completed, 1))
            .unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(ids(&logger.query(&LogFilter::new())), ["r0"]);
    }

    #[test]
    fn sink_mirrors_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let logger = RequestLogger::new(LoggerConfig {
            sink: Some(SinkConfig::new(&path)),
            ..open_config()
        });
        for i in 0..4 {
            logger
                .log(record(i, "code", RequestStatus::Completed, 1))
                .unwrap();
        }
        let mut memory = logger.query(&LogFilter::new());
        memory.reverse();
        assert_eq!(read_jsonl(&path).unwrap(), memory);
    }

    #[test]
    fn export_applies_the_filter() {
        let logger = sample_logger();
        for format in [ExportFormat::Json, ExportFormat::Jsonl, ExportFormat::Csv] {
            let mut buf = Vec::new();
            let filter = LogFilter::new().status(RequestStatus::Failed);
            assert_eq!(logger.export(&filter, format, &mut buf).unwrap(), 2);
            let back = read_records(buf.as_slice(), format).unwrap();
            assert_eq!(back, logger.query(&filter), "{format}");
        }
    }

    #[test]
    fn logs_from_many_threads() {
        let logger = std::sync::Arc::new(RequestLogger::new(open_config()));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let logger = logger.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        logger
                            .log(record(t * 1000 + i, "code", RequestStatus::Completed, 1))
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(logger.len(), 2_000);
    }
}
