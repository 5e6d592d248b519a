//! `mdsa._native.Engine`: one [`Mdsa`] and the calls the Python `MDSA` makes.
//!
//! Arguments with structure (query options, log filters, domains) arrive as
//! JSON text and results leave as JSON text: the Python half builds both from
//! its typed objects, and `serde` names the field that is wrong.

use std::ops::ControlFlow;
use std::path::PathBuf;

use mdsa::domains::{DomainConfig, DomainRegistry};
use mdsa::monitor::{LogFilter, LogQuery};
use mdsa::{Mdsa, MdsaError, QueryOptions, SystemConfig};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::de::DeserializeOwned;

use crate::errors::{raise, request_error, to_py};
use crate::stream::Stream;

/// One mdsa: its models, domains, router, request log and metrics.
#[pyclass(frozen, module = "mdsa._native")]
pub(crate) struct Engine {
    pub(crate) mdsa: Mdsa,
}

fn log_filter(query: &LogQuery) -> PyResult<LogFilter> {
    query.to_filter().map_err(|e| request_error(e.to_string()))
}

/// Parses JSON from the Python half, naming the field that is wrong as the
/// Python caller knows it: `max_tokens`, `domains[0].generation.top_k`.
fn from_json<T: DeserializeOwned>(what: &str, json: &str) -> PyResult<T> {
    let deserializer = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = match (what, path.as_str()) {
            (what, ".") => what.to_owned(),
            ("", path) => path.to_owned(),
            (what, path) if path.starts_with('[') => format!("{what}{path}"),
            (what, path) => format!("{what}.{path}"),
        };
        // serde_json places the error in the JSON text, which the caller never saw.
        let message = e.inner().to_string();
        let message = match message.rfind(" at line ") {
            Some(at) => &message[..at],
            None => &message,
        };
        request_error(format!("{field}: {message}"))
    })
}

fn to_json(value: &impl serde::Serialize) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| raise("MdsaError", format!("encoding a result: {e}")))
}

/// A registry of exactly the domains given (JSON list of domain objects).
fn registry_from_json(json: &str) -> PyResult<DomainRegistry> {
    let domains: Vec<DomainConfig> = from_json("domains", json)?;
    let mut registry = DomainRegistry::new();
    for domain in domains {
        registry
            .insert(domain)
            .map_err(|e| to_py(MdsaError::Domain(e)))?;
    }
    Ok(registry)
}

/// Runs a query on this thread, GIL released, checking for Ctrl-C at every
/// event so that it cancels the generation (the request is logged as cancelled).
fn run_query(py: Python<'_>, mdsa: &Mdsa, text: &str, options: &QueryOptions) -> PyResult<String> {
    let mut interrupted = None;
    let mut on_event = |_event| match Python::attach(|py| py.check_signals()) {
        Ok(()) => ControlFlow::Continue(()),
        Err(signal) => {
            interrupted = Some(signal);
            ControlFlow::Break(())
        }
    };
    let response = py.detach(|| mdsa.query_with(text, options, &mut on_event));
    if let Some(signal) = interrupted {
        return Err(signal);
    }
    to_json(&response.map_err(to_py)?)
}

#[pymethods]
impl Engine {
    /// Builds mdsa: reads the configuration, loads the router's encoder
    /// (downloading it unless offline) and embeds the domains' examples.
    #[new]
    #[pyo3(signature = (config=None, domains_file=None, domains_json=None, offline=false, log_file=None))]
    fn new(
        py: Python<'_>,
        config: Option<PathBuf>,
        domains_file: Option<PathBuf>,
        domains_json: Option<&str>,
        offline: bool,
        log_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        let mut system = match &config {
            Some(path) => SystemConfig::from_file(path).map_err(to_py)?,
            None => SystemConfig::default(),
        };
        system.offline |= offline;
        if log_file.is_some() {
            system.logging.file = log_file;
        }
        if domains_file.is_some() {
            system.domains = domains_file;
        }
        let mut builder = Mdsa::builder();
        if let Some(json) = domains_json {
            builder = builder.domains(registry_from_json(json)?);
        }
        let mdsa = py
            .detach(|| builder.config(system).build())
            .map_err(to_py)?;
        Ok(Self { mdsa })
    }

    /// Routes, answers, validates and logs one query; the response as JSON.
    fn query(&self, py: Python<'_>, text: &str, options_json: &str) -> PyResult<String> {
        let options: QueryOptions = from_json("", options_json)?;
        run_query(py, &self.mdsa, text, &options)
    }

    /// Starts a query on a thread of its own and returns its events.
    fn stream(&self, text: &str, options_json: &str) -> PyResult<Stream> {
        let options: QueryOptions = from_json("", options_json)?;
        Ok(Stream::start(self.mdsa.clone(), text.to_owned(), options))
    }

    /// The route decision for one query, as JSON.
    fn route(&self, py: Python<'_>, text: &str) -> PyResult<String> {
        let decision = py.detach(|| self.mdsa.route(text)).map_err(to_py)?;
        to_json(&decision)
    }

    /// The route decisions for many queries (embedded in batches), as JSON.
    fn route_batch(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<String> {
        let decisions = py
            .detach(|| {
                let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                self.mdsa.route_batch(&texts)
            })
            .map_err(to_py)?;
        to_json(&decisions)
    }

    /// Embeds texts with the router's encoder: the vectors as one buffer of
    /// little-endian f32, row after row, with the row count and width.
    fn embed<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
    ) -> PyResult<(Bound<'py, PyBytes>, usize, usize)> {
        let vectors = py
            .detach(|| {
                let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                self.mdsa.embed(&texts)
            })
            .map_err(to_py)?;
        let dim = vectors.first().map_or(0, Vec::len);
        let bytes: Vec<u8> = vectors
            .iter()
            .flatten()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        Ok((PyBytes::new(py, &bytes), vectors.len(), dim))
    }

    /// The domains in use, as a JSON list of domain objects.
    fn domains(&self) -> PyResult<String> {
        to_json(&self.mdsa.domains().iter().collect::<Vec<_>>())
    }

    /// Adds a domain (JSON object), or replaces the one with its id; returns
    /// whether one was replaced. The router embeds its examples at once.
    fn add_domain(&self, py: Python<'_>, domain_json: &str) -> PyResult<bool> {
        let domain: DomainConfig = from_json("domain", domain_json)?;
        py.detach(|| {
            let mut registry = self.mdsa.domains();
            let replaced = registry.insert(domain)?.is_some();
            self.mdsa.reload_domains(registry)?;
            Ok(replaced)
        })
        .map_err(to_py)
    }

    /// Removes a domain; returns whether there was one with that id.
    fn remove_domain(&self, py: Python<'_>, id: &str) -> PyResult<bool> {
        py.detach(|| {
            let mut registry = self.mdsa.domains();
            if registry.remove(id).is_none() {
                return Ok(false);
            }
            self.mdsa.reload_domains(registry)?;
            Ok(true)
        })
        .map_err(to_py)
    }

    /// Replaces every domain with those of a domains file (RON).
    fn reload_domains(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| {
            let registry = DomainRegistry::from_file(&path)?;
            self.mdsa.reload_domains(registry)
        })
        .map_err(to_py)
    }

    /// The request log's records that pass the query's filters (JSON),
    /// most recent first.
    fn logs(&self, query_json: &str) -> PyResult<String> {
        let filter = log_filter(&from_json("", query_json)?)?;
        to_json(&self.mdsa.logger().query(&filter))
    }

    /// The same records exported as the query's `format`: `json`, `jsonl` or
    /// `csv` text.
    fn export_logs(&self, query_json: &str) -> PyResult<String> {
        let query: LogQuery = from_json("", query_json)?;
        let format = query
            .export_format()
            .map_err(|e| request_error(e.to_string()))?;
        let mut out = Vec::new();
        self.mdsa
            .logger()
            .export(&log_filter(&query)?, format, &mut out)
            .map_err(|e| to_py(MdsaError::Log(e)))?;
        String::from_utf8(out).map_err(|e| raise("LogError", format!("exported log: {e}")))
    }

    /// Latency percentiles, throughput, per domain and per model (JSON).
    fn metrics(&self) -> PyResult<String> {
        self.mdsa.refresh_serving_metrics();
        to_json(&self.mdsa.metrics().snapshot())
    }

    /// The metrics in the Prometheus text format, as `/metrics` serves them.
    fn prometheus(&self) -> PyResult<String> {
        self.mdsa.refresh_serving_metrics();
        self.mdsa
            .metrics()
            .encode_prometheus()
            .map_err(|e| to_py(MdsaError::Log(e)))
    }

    /// Every model the configuration and the domains name, with whether it is
    /// resident and what it holds (JSON list).
    fn models(&self) -> PyResult<String> {
        let manager = self.mdsa.manager();
        let resident = manager.resident();
        let models: Vec<serde_json::Value> = manager
            .specs()
            .into_iter()
            .map(|spec| {
                let loaded = resident.iter().find(|r| r.id == spec.id);
                serde_json::json!({
                    "id": spec.id,
                    "role": spec.role,
                    "source": spec.source,
                    "backend": spec.backend,
                    "quantization": spec.quantization,
                    "pinned": spec.pinned,
                    "resident": loaded.is_some(),
                    "device": loaded.map(|r| &r.device),
                    "bytes": loaded.map(|r| r.bytes),
                    "weight_bytes": loaded.map(|r| r.weight_bytes),
                    "kv_bytes": loaded.map(|r| r.kv_bytes),
                    "in_use": loaded.map(|r| r.in_use),
                    "idle_secs": loaded.map(|r| r.idle_for.as_secs_f64()),
                })
            })
            .collect();
        to_json(&models)
    }

    /// Makes a model resident (downloading it when missing and allowed).
    fn load(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        py.detach(|| self.mdsa.manager().load(id))
            .map_err(|e| to_py(MdsaError::Manager(e)))
    }

    /// Unloads a model; false when it was not resident.
    fn unload(&self, py: Python<'_>, id: &str) -> PyResult<bool> {
        py.detach(|| self.mdsa.manager().unload(id))
            .map_err(|e| to_py(MdsaError::Manager(e)))
    }
}

/// The four built-in domains (finance, medical, support, technical) as a JSON
/// list of domain objects.
#[pyfunction]
pub(crate) fn builtin_domains() -> PyResult<String> {
    to_json(&DomainRegistry::builtin().iter().collect::<Vec<_>>())
}
