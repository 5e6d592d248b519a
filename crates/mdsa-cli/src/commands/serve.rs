//! `mdsa serve`: the OpenAI-compatible API, metrics and dashboard over HTTP.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use mdsa_server::{ApiKeys, Limits, Server, ServerConfig, shutdown_signal};

use super::system::SystemArgs;

/// Arguments of `mdsa serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on; loopback by default so the models are not
    /// offered to the network by accident (0.0.0.0 for all interfaces).
    #[arg(long, default_value = "127.0.0.1", env = "MDSA_HOST")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8080, env = "MDSA_PORT")]
    port: u16,
    /// Requests running models at once, and so the sequences each generator
    /// batches (default: the configuration's `budget.sequences_per_model`, 8).
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// Requests that may wait for a slot; beyond, 429.
    #[arg(long, default_value_t = Limits::default().max_queue)]
    max_queue: usize,
    /// Seconds a request may wait for a slot before a 503.
    #[arg(long, default_value_t = 60.0)]
    queue_timeout: f64,
    /// Cap on max_tokens per request.
    #[arg(long, default_value_t = Limits::default().max_tokens)]
    max_tokens: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Largest total of request headers in bytes (431 beyond).
    #[arg(long, default_value_t = Limits::default().max_header_bytes)]
    max_header_bytes: usize,
    /// The Unix nice value (0-19, Linux) of the threads that run the models'
    /// shared batches, below the request threads (HTTP, routing, streaming):
    /// on a machine with few cores a new request is then routed while the
    /// batch runs rather than time-sliced with it. 0: one priority for all.
    #[arg(long, default_value_t = 10, env = "MDSA_COMPUTE_NICE", value_parser = clap::value_parser!(u8).range(0..=19))]
    compute_nice: u8,
    /// Do not reload the domains file when it changes on disk.
    #[arg(long)]
    no_watch: bool,
    /// Require `Authorization: Bearer <key>` on the API and /metrics. Prefer the
    /// environment variable: a flag shows in the process list.
    #[arg(long, env = "MDSA_API_KEY", hide_env_values = true, value_name = "KEY")]
    api_key: Option<String>,
    /// The key for the admin routes (default: the API key).
    #[arg(
        long,
        env = "MDSA_ADMIN_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    admin_key: Option<String>,
}

pub(crate) fn run(args: &ServeArgs, system: &SystemArgs) -> anyhow::Result<()> {
    init_tracing();
    // Before the models load: their threads take the priority as they start.
    mdsa::local::set_compute_nice(args.compute_nice);
    let mut system = system.clone();
    if let Some(n) = args.max_concurrent {
        anyhow::ensure!(n > 0, "--max-concurrent: expected at least 1, found 0");
        system.sequences = Some(n);
    }
    let mdsa = system.build()?;
    let mut limits = Limits {
        max_queue: args.max_queue,
        max_tokens: args.max_tokens,
        max_body_bytes: args.max_body_bytes,
        max_header_bytes: args.max_header_bytes,
        queue_timeout: Duration::try_from_secs_f64(args.queue_timeout)
            .context("--queue-timeout: expected seconds >= 0")?,
        ..Limits::default()
    };
    // Generation requests of one model run together, so as many may run as
    // each model batches.
    limits.max_concurrent = mdsa.config().budget.sequences_per_model;
    let watch_domains: Option<PathBuf> = if args.no_watch {
        None
    } else {
        mdsa.config().domains.clone()
    };
    let keys = ApiKeys {
        api: non_empty(args.api_key.as_deref(), "--api-key")?,
        admin: non_empty(args.admin_key.as_deref(), "--admin-key")?,
    };
    if !args.host.is_loopback() && keys.api.is_none() {
        eprintln!(
            "warning: listening on {} without an API key: anyone who can reach it can use the models and read the request log (set MDSA_API_KEY)",
            args.host
        );
    }
    let config = ServerConfig {
        host: args.host,
        port: args.port,
        limits,
        keys,
        watch_domains,
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(mdsa, config).await?;
        let addr = server.local_addr()?;
        eprintln!("mdsa serve · listening on http://{addr} (dashboard at /, OpenAI API at /v1, metrics at /metrics)");
        server.serve(shutdown_signal()).await?;
        eprintln!("mdsa serve · stopped");
        Ok(())
    })
}

/// A key given as an empty string is a mistake (an unset variable in a
/// script), not a wish for no key.
fn non_empty(key: Option<&str>, flag: &str) -> anyhow::Result<Option<String>> {
    match key {
        Some(key) if key.trim().is_empty() => {
            anyhow::bail!("{flag}: the key is empty; unset it for no key")
        }
        other => Ok(other.map(str::to_string)),
    }
}

/// Server logs to stderr; `RUST_LOG` chooses what (default: info).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
